/**
 * Starting the next generation, handing it the registered descriptors, and
 * hearing its readiness.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ChildProcess from "node:child_process"
import type { UpgradeError } from "../UpgradeError.js"
import { ChildExited, HealthCheckFailed, RolledBack, SpawnError, Stopped, UpgradeTimeout } from "../UpgradeError.js"
import * as Channel from "./channel.js"
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

/** @internal */
export const spawn = (
  command: Command,
  manifest: Protocol.Manifest,
  handover: Handover,
  /** Under a runner: its handlers for what only its generations send. */
  fromChild: FromChild = notARunner
): Effect.Effect<Child, SpawnError> =>
  Effect.gen(function*() {
    const ready = yield* Deferred.make<void>()
    const parked = yield* Deferred.make<void>()
    const unready = yield* Deferred.make<string>()
    const exited = yield* Deferred.make<Exited>()
    const label = [command.execPath, ...command.args].join(" ")
    const child = yield* Effect.async<ChildProcess.ChildProcess, SpawnError>((resume) => {
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
      resume(Effect.succeed(child))
    })
    const pid = child.pid!
    child.once("exit", (code, signal) => Deferred.unsafeDone(exited, Effect.succeed({ code, signal })))
    // A failed kill or send is reported elsewhere (exit, send callback); an unheard 'error' would crash us.
    child.on("error", () => {})
    const send = (message: Channel.ToChild, handle?: object) =>
      Effect.mapError(
        Channel.send(child, message, handle),
        (broken) => new SpawnError({ command: label, cause: broken.cause ?? `the IPC channel to pid ${pid} closed` })
      )
    const sendHandover = (handover: Handover) =>
      Effect.zipRight(
        Effect.forEach(handover.sockets, ({ handle, key }) => send({ tableflip: "descriptor", key }, handle), {
          discard: true
        }),
        handover.state === undefined ? Effect.void : send({ tableflip: "state", state: handover.state })
      )
    const self: Child = {
      pid,
      ready,
      parked,
      unready,
      exited,
      sendSockets: sendHandover(handover),
      sendGo: (manifest, handover) => Effect.zipRight(send({ tableflip: "go", manifest }), sendHandover(handover)),
      kill: Effect.suspend(() => {
        child.kill("SIGKILL")
        return Deferred.await(exited)
      }).pipe(
        // Runs from finalizers, which are uninterruptible: the timeout needs this to bite.
        Effect.interruptible,
        Effect.timeoutFail({
          duration: Duration.seconds(10),
          onTimeout: () => new Error(`pid ${pid} was not reaped 10 s after SIGKILL`)
        }),
        Effect.catchAll((error) => Log.error(error.message))
      ),
      post: (message) =>
        Effect.ignore(Channel.send(child, message)).pipe(
          // Queued behind a socket the child never acknowledged, the send never completes; its exit does.
          Effect.raceFirst(Effect.asVoid(Deferred.await(exited)))
        ),
      detach: Effect.sync(() => {
        retained.add(child)
        child.channel?.unref()
        child.unref()
      })
    }
    const { receive } = yield* Channel.receiver(Channel.fromChild, `the next generation (pid ${pid})`, () => ({
      ready: () => Deferred.unsafeDone(ready, Effect.void),
      parked: () => Deferred.unsafeDone(parked, Effect.void),
      unready: ({ reason }) => Deferred.unsafeDone(unready, Effect.succeed(reason)),
      ...fromChild(self)
    }))
    child.on("message", receive)
    return self
  })

/**
 * How long a child whose channel broke while it was sent its sockets has to
 * exit, so that its exit code, not the broken pipe, is the error.
 */
const BROKEN_CHANNEL_GRACE = Duration.seconds(2)

/**
 * Hands the child its sockets and state, then waits for it to say it is ready
 * within `timeout` (counted from the first send), then to stay alive through
 * `probation`. The whole of it is raced with the child's exit and with `stop`,
 * so a child that dies, hangs or stops at any point, even before Node has
 * delivered the first socket, ends it. Fails with `UpgradeTimeout`,
 * `ChildExited` (before ready), `RolledBack` (after), `HealthCheckFailed`,
 * `SpawnError` (the channel broke and the child lives on), or `Stopped` once
 * `stop` completes. The caller kills the child on failure.
 *
 * @internal
 */
export const awaitReady = (
  child: Child,
  options: {
    readonly timeout: Duration.Duration
    readonly probation: Duration.Duration
    readonly stop: Deferred.Deferred<void>
    /** A prepared child: the manifest its `go` carries, and what to hand it after. */
    readonly go?: { readonly manifest: Protocol.Manifest; readonly handover: Handover } | undefined
  }
): Effect.Effect<void, UpgradeError> =>
  (options.go === undefined ? child.sendSockets : child.sendGo(options.go.manifest, options.go.handover)).pipe(
    // A broken channel most often means the child is dying: its exit, raced below, says how.
    Effect.catchAll((error) => Effect.zipRight(Effect.sleep(BROKEN_CHANNEL_GRACE), Effect.fail(error))),
    Effect.zipRight(Deferred.await(child.ready)),
    Effect.raceFirst(
      Effect.zipRight(Effect.sleep(options.timeout), new UpgradeTimeout({ pid: child.pid, timeout: options.timeout }))
    ),
    Effect.zipRight(
      Duration.isZero(options.probation) ? Effect.void : Log.info(
        `the next generation (pid ${child.pid}) is ready; probation for ${Duration.format(options.probation)}`
      ).pipe(Effect.zipRight(Effect.sleep(options.probation)))
    ),
    Effect.raceFirst(Effect.flatMap(
      Deferred.await(child.exited),
      ({ code, signal }) =>
        Effect.flatMap(
          Deferred.isDone(child.ready),
          (wasReady): Effect.Effect<never, RolledBack | ChildExited> =>
            wasReady
              ? new RolledBack({ pid: child.pid, code, signal, probation: options.probation })
              : new ChildExited({ pid: child.pid, code, signal })
        )
    )),
    Effect.raceFirst(Effect.flatMap(
      Deferred.await(child.unready),
      (reason) => new HealthCheckFailed({ pid: child.pid, reason })
    )),
    Effect.raceFirst(Effect.zipRight(Deferred.await(options.stop), new Stopped({ childPid: child.pid })))
  )

/**
 * Waits, within `timeout`, for a prepared child to say it has loaded and
 * parked, raced with its exit and with `stop`. Fails with `UpgradeTimeout`,
 * `ChildExited` or `Stopped`; the caller kills the child on failure.
 *
 * @internal
 */
export const awaitParked = (
  child: Child,
  options: { readonly timeout: Duration.Duration; readonly stop: Deferred.Deferred<void> }
): Effect.Effect<void, UpgradeError> =>
  Deferred.await(child.parked).pipe(
    Effect.raceFirst(
      Effect.zipRight(
        Effect.sleep(options.timeout),
        new UpgradeTimeout({ pid: child.pid, timeout: options.timeout, phase: "prepare" })
      )
    ),
    Effect.raceFirst(Effect.flatMap(
      Deferred.await(child.exited),
      ({ code, signal }) => new ChildExited({ pid: child.pid, code, signal })
    )),
    Effect.raceFirst(Effect.zipRight(Deferred.await(options.stop), new Stopped({ childPid: child.pid })))
  )
