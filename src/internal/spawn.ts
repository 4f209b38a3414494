/**
 * Starting the next generation, handing it the registered descriptors, and
 * hearing its readiness.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as ChildProcess from "node:child_process"
import { SpawnError } from "../UpgradeError.js"
import * as Channel from "./channel.js"
import * as Fx from "./fx.js"
import * as Log from "./log.js"
import * as Protocol from "./protocol.js"
import type { Handover } from "./registry.js"

/**
 * How the next generation is started.
 *
 * @internal
 */
export interface Command {
  readonly execPath: string
  readonly args: ReadonlyArray<string>
  readonly cwd: string
  readonly env: Readonly<Record<string, string | undefined>>
}

/** @internal */
export interface Exited {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

/** @internal */
export interface Child {
  readonly pid: number
  /** Completes when the child says it is ready. */
  readonly ready: Deferred.Deferred<void>
  /** Completes when a prepared child says it has loaded and waits for `go`. */
  readonly parked: Deferred.Deferred<void>
  /** Completes, with its reason, when the child says its readiness check failed. */
  readonly unready: Deferred.Deferred<string>
  /** Completes when the child has exited and been reaped. */
  readonly exited: Deferred.Deferred<Exited>
  /**
   * Sends every socket, then the state if there is one; fails if the channel
   * breaks. Node holds back every message after the first socket until the
   * child acknowledges that one, and never completes those sends if the child
   * dies or stops first: only `awaitReady` runs this, raced with the child's
   * exit, the timeout and `stop`.
   */
  readonly sendSockets: Effect.Effect<void, SpawnError>
  /** Tells a prepared child to take over with `manifest`, then sends `handover`'s sockets and state. */
  readonly sendGo: (manifest: Protocol.Manifest, handover: Handover) => Effect.Effect<void, SpawnError>
  /** SIGKILL, then wait (bounded) until the child is reaped. */
  readonly kill: Effect.Effect<void>
  /** Lets the child outlive this process; keeps the channel open until this process exits. */
  readonly detach: Effect.Effect<void>
  /** Sends a protocol message; a broken channel (the child died) is ignored. */
  readonly post: (message: Channel.ToChild) => Effect.Effect<void>
}

/**
 * What a runner does with the messages only its generations send: the
 * listeners they hand up, and their requests. Given the child, so that an
 * answer knows where to go.
 *
 * @internal
 */
export type FromChild = (child: Child) => Pick<Channel.Handlers<Channel.ToParent>, "descriptor" | "upgrade" | "prepare">

/** A parent that is not a runner takes no socket and no request from its child. */
const notARunner: FromChild = () => ({
  descriptor: () => {},
  upgrade: () => {},
  prepare: () => {}
})

/**
 * Children that took over from this process. The IPC channel to each must
 * stay open until this process dies: its disconnect is how the new
 * generation learns the old one is gone. Held here so nothing collects it.
 */
const retained = new Set<ChildProcess.ChildProcess>()

/** What the child says, and its exit. */
interface Signals {
  readonly ready: Deferred.Deferred<void>
  readonly parked: Deferred.Deferred<void>
  readonly unready: Deferred.Deferred<string>
  /** Completed behind the messages the child sent before it exited. */
  readonly exited: Deferred.Deferred<Exited>
  /** Completed by the 'exit' event itself. */
  readonly reaped: Deferred.Deferred<Exited>
}

const makeSignals: Effect.Effect<Signals> = Effect.all({
  ready: Deferred.make<void>(),
  parked: Deferred.make<void>(),
  unready: Deferred.make<string>(),
  exited: Deferred.make<Exited>(),
  reaped: Deferred.make<Exited>()
})

/** Starts the process, and hears its exit from the start: it may come before anything else is set up. */
const start = (command: Command, manifest: Protocol.Manifest, handover: Handover, signals: Signals, label: string) =>
  Fx.callback<ChildProcess.ChildProcess, SpawnError>((resume) => {
    let child: ChildProcess.ChildProcess
    try {
      child = ChildProcess.spawn(command.execPath, command.args as Array<string>, {
        cwd: command.cwd,
        env: { ...command.env, [Protocol.ENV]: Protocol.encode(manifest) },
        stdio: ["inherit", "inherit", "inherit", "ipc", ...handover.fds]
      })
    } catch (cause) {
      return resume(Effect.fail(new SpawnError({ command: label, cause })))
    }
    if (child.pid === undefined) {
      child.once("error", (cause) => resume(Effect.fail(new SpawnError({ command: label, cause }))))
      return
    }
    child.once("exit", (code, signal) => Fx.doneUnsafe(signals.reaped, Effect.succeed({ code, signal })))
    // A failed kill or send is reported elsewhere (exit, send callback); an unheard 'error' would crash us.
    child.on("error", () => {})
    resume(Effect.succeed(child))
  })

/** SIGKILL, then wait (bounded) until the child is reaped. */
const kill = (child: ChildProcess.ChildProcess, exited: Deferred.Deferred<Exited>) =>
  Effect.suspend(() => {
    child.kill("SIGKILL")
    return Deferred.await(exited)
  }).pipe(
    // Runs from finalizers, which are uninterruptible: the timeout needs this to bite.
    Effect.interruptible,
    Fx.timeoutFail({
      duration: Duration.seconds(10),
      onTimeout: () => new Error(`pid ${child.pid} was not reaped 10 s after SIGKILL`)
    }),
    Fx.catchAll((error) => Log.error(error.message))
  )

/**
 * Kills the child unless it was handed over, waiting for the exit event
 * itself (the fiber that passes it on to `exited`, behind the child's last
 * messages, may be interrupted by now), then completes `exited` if that
 * fiber did not, so that nothing waits for it forever.
 */
const release = (child: ChildProcess.ChildProcess, signals: Signals, handedOver: () => boolean) =>
  Effect.gen(function*() {
    if (handedOver()) return
    if (!(yield* Deferred.isDone(signals.reaped))) yield* kill(child, signals.reaped)
    const reaped = yield* Deferred.poll(signals.reaped)
    if (reaped._tag === "Some") yield* Deferred.complete(signals.exited, reaped.value)
  })

const childOf = (
  child: ChildProcess.ChildProcess,
  label: string,
  signals: Signals,
  handOver: () => void,
  handover: Handover
): Child => {
  const pid = child.pid!
  const send = (message: Channel.ToChild, handle?: object) =>
    Effect.mapError(
      Channel.send(child, message, handle),
      (broken) => new SpawnError({ command: label, cause: broken.cause ?? `the IPC channel to pid ${pid} closed` })
    )
  const sendHandover = (handover: Handover) =>
    Effect.andThen(
      Effect.forEach(handover.sockets, ({ handle, key }) => send({ tableflip: "descriptor", key }, handle), {
        discard: true
      }),
      handover.state === undefined ? Effect.void : send({ tableflip: "state", state: handover.state })
    )
  return {
    pid,
    ready: signals.ready,
    parked: signals.parked,
    unready: signals.unready,
    exited: signals.exited,
    sendSockets: sendHandover(handover),
    sendGo: (manifest, handover) => Effect.andThen(send({ tableflip: "go", manifest }), sendHandover(handover)),
    kill: kill(child, signals.exited),
    post: (message) =>
      Effect.ignore(Channel.send(child, message)).pipe(
        // Queued behind a socket the child never acknowledged, the send never completes; its exit does.
        Effect.raceFirst(Effect.asVoid(Deferred.await(signals.exited)))
      ),
    detach: Effect.sync(() => {
      handOver()
      retained.add(child)
      child.channel?.unref()
      child.unref()
    })
  }
}

/**
 * The child as a resource of `scope`: released, it is killed unless it was
 * handed over (`detach`) or has exited. Its channel's receiver lives in the
 * same scope.
 */
const acquire = (
  command: Command,
  manifest: Protocol.Manifest,
  handover: Handover,
  fromChild: FromChild
): Effect.Effect<Child, SpawnError, Scope.Scope> =>
  Effect.gen(function*() {
    const signals = yield* makeSignals
    const label = [command.execPath, ...command.args].join(" ")
    let handedOver = false
    const child = yield* Effect.acquireRelease(
      start(command, manifest, handover, signals, label),
      (child) => release(child, signals, () => handedOver)
    )
    const self = childOf(child, label, signals, () => handedOver = true, handover)
    const { after, receive } = yield* Channel.receiver(
      Channel.fromChild,
      `the next generation (pid ${self.pid})`,
      () => ({
        ready: () => Fx.doneUnsafe(signals.ready, Effect.void),
        parked: () => Fx.doneUnsafe(signals.parked, Effect.void),
        unready: ({ reason }) => Fx.doneUnsafe(signals.unready, Effect.succeed(reason)),
        ...fromChild(self)
      })
    )
    child.on("message", receive)
    // The exit waits its turn behind the messages that came before it (a `ready`, then an exit, is
    // a rollback, not a child that never got ready). Interrupted when the scope closes, before the
    // release, which then completes `exited` itself. Interruptible: `spawn` builds this uninterruptibly.
    yield* Deferred.await(signals.reaped).pipe(
      Effect.flatMap((exited) => Effect.sync(() => after(() => Fx.doneUnsafe(signals.exited, Effect.succeed(exited))))),
      Effect.interruptible,
      Effect.forkScoped
    )
    return self
  })

/**
 * Starts the next generation with `manifest`, the files of `handover` at fds
 * 4.., and its sockets and state ready to send. The child is a resource of
 * the caller's scope, in a scope of its own forked from it, which closes when
 * the child exits: closed first, the child is killed unless it was handed
 * over (`detach`). If this fails or is interrupted once the process has
 * started, the process is killed. Until then the caller may `kill` it.
 *
 * @internal
 */
export const spawn = (
  command: Command,
  manifest: Protocol.Manifest,
  handover: Handover,
  /** Under a runner: its handlers for what only its generations send. */
  fromChild: FromChild = notARunner
): Effect.Effect<Child, SpawnError, Scope.Scope> =>
  Effect.gen(function*() {
    const owner = yield* Effect.scope
    const scope = yield* Fx.forkScope(owner)
    const child = yield* acquire(command, manifest, handover, fromChild).pipe(
      Fx.inScope(scope),
      Effect.onExit((exit) => Exit.isSuccess(exit) ? Effect.void : Scope.close(scope, exit)),
      Effect.uninterruptible
    )
    // Its receiver stops once the child has exited and every message it sent has been handled.
    yield* Deferred.await(child.exited).pipe(
      Effect.andThen(Scope.close(scope, Exit.void)),
      Effect.interruptible,
      Effect.forkIn(owner)
    )
    return child
  })

export { awaitParked, awaitReady } from "./spawn/wait.js"
