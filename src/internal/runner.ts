/**
 * The stable-PID runner: one process for the life of the service that keeps
 * the listening sockets, starts every generation of the app as its own child
 * through the handover protocol, and turns SIGHUP into an upgrade. The app's
 * generations hand their listeners up at `ready`; the runner never accepts on
 * them, it only keeps them open, so between generations (or while none runs)
 * connections wait in the kernel's queue instead of being refused.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberSet from "effect/FiberSet"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Os from "node:os"
import * as PidFile from "../PidFile.js"
import { NotReady, SpawnError, Stopped, UpgradeInProgress } from "../UpgradeError.js"
import * as Announce from "./announce.js"
import * as Channel from "./channel.js"
import * as Errors from "./errors.js"
import * as Handles from "./handles.js"
import * as Log from "./log.js"
import * as Protocol from "./protocol.js"
import * as Reaper from "./reaper.js"
import type { Handover } from "./registry.js"
import * as Spawn from "./spawn.js"

/** @internal */
export interface Options {
  /** The app's command line: executable, then its arguments. */
  readonly command: ReadonlyArray<string>
  readonly pidFile?: string | undefined
  readonly upgradeTimeout: Duration.Duration
  readonly probation: Duration.Duration
}

interface Held {
  readonly descriptor: Protocol.SocketDescriptor
  readonly handle: object
}

interface Generation {
  readonly number: number
  readonly child: Spawn.Child
  /** The listeners it handed up at `ready`. */
  readonly offered: Map<string, Held>
}

const STOP_SIGNALS = ["SIGTERM", "SIGINT", "SIGQUIT"] as const
const FORWARDED = ["SIGUSR1", "SIGUSR2", "SIGWINCH"] as const

/** The exit code a shell would report for a child that ended this way. */
const exitCode = ({ code, signal }: Spawn.Exited): number =>
  code ?? 128 + (signal === null ? 0 : (Os.constants.signals[signal] ?? 0))

/**
 * Runs the app until it exits or is stopped; succeeds with the exit code the
 * runner should exit with (the app's).
 *
 * @internal
 */
export const run = Effect.fnUntraced(function*(options: Options) {
  Log.identify("runner")
  const [execPath, ...args] = options.command
  if (execPath === undefined) return yield* new SpawnError({ command: "", cause: "no command to run" })
  const env = { ...process.env }
  // The runner is the service's main pid: only it speaks to systemd.
  delete env.NOTIFY_SOCKET
  const command: Spawn.Command = { execPath, args, cwd: process.cwd(), env }
  const label = options.command.join(" ")
  const announce = Announce.make("runner")

  let held = new Map<string, Held>()
  let current: Generation | undefined
  /** The first generation until it says ready: it cannot be upgraded yet. */
  let starting: Generation | undefined
  let stopping = false
  const live = new Set<Spawn.Child>()
  const finished = yield* Deferred.make<number>()
  const stopped = yield* Deferred.make<void>()
  const lock = yield* Effect.makeSemaphore(1)
  // Effects started from Node callbacks run in the runner's runtime (its logger) and end with its scope.
  const runFork = yield* FiberSet.makeRuntime<Scope.Scope>()
  let upgrading = false
  /** A prepared generation, parked until the next upgrade. */
  let parked: Generation | undefined

  const manifestFor = (
    number: number,
    predecessorPid: number | undefined,
    extra: { readonly prepared?: boolean } = {}
  ): Protocol.Manifest => ({
    version: Protocol.VERSION,
    generation: number,
    parentPid: process.pid,
    cwd: command.cwd,
    fds: [...held.values()].map((h) => h.descriptor),
    supervisor: true,
    ...Protocol.upgradeTimeoutField(options.upgradeTimeout),
    ...(predecessorPid === undefined ? {} : { predecessorPid }),
    ...extra
  })

  const handover = (): Handover => {
    const entries = [...held.values()]
    return {
      descriptors: entries.map((h) => h.descriptor),
      sockets: entries.map((h) => ({ key: h.descriptor.key, handle: h.handle })),
      fds: []
    }
  }

  /** Starts generation `number`; a prepared one gets no socket until `go`. */
  const start = (number: number, predecessorPid: number | undefined, prepared = false) =>
    Effect.gen(function*() {
      const offered = new Map<string, Held>()
      const child = yield* Spawn.spawn(
        command,
        manifestFor(number, predecessorPid, prepared ? { prepared: true } : {}),
        prepared ? { descriptors: [], sockets: [], fds: [] } : handover(),
        (child) => ({
          descriptor: ({ descriptor }, handle) => {
            // A second socket under one key would replace the first, which nobody would close.
            if (offered.has(descriptor.key)) Handles.closeHandle(handle)
            else offered.set(descriptor.key, { descriptor, handle })
          },
          upgrade: (request) => runFork(answer(child, request)),
          prepare: (request) => runFork(answer(child, request))
        })
      )
      live.add(child)
      const generation: Generation = { number, child, offered }
      // Watched before anything can fail, so that every child leaves `live` when it exits.
      yield* Deferred.await(child.exited).pipe(
        Effect.tap(() => live.delete(child)),
        Effect.flatMap((exited) => onExit(generation, exited)),
        Effect.forkScoped
      )
      // The sockets go out in `awaitReady`, raced with the child's exit, the timeout and stop.
      yield* Log.info(`${prepared ? "preparing" : "started"} generation ${number} (pid ${child.pid})`)
      return generation
    })

  /**
   * The first generation has no predecessor to fall back on, so it is not
   * killed for being slow: past the upgrade timeout the runner says what is
   * likely wrong and goes on waiting. Stopped meanwhile, it gets SIGTERM (an
   * app that never said ready may not read the runner's messages), bounded by
   * the upgrade timeout.
   */
  const awaitFirst = (generation: Generation) =>
    Spawn.awaitReady(generation.child, { timeout: Duration.infinity, probation: Duration.zero, stop: stopped }).pipe(
      Effect.raceFirst(
        Effect.sleep(options.upgradeTimeout).pipe(
          Effect.zipRight(Log.warning(
            `generation 1 (pid ${generation.child.pid}) has not said ready within ${
              Duration.format(options.upgradeTimeout)
            }: is the app built on effect-tableflip's Upgrader, and does it call ready? ` +
              "The runner cannot upgrade it until it does"
          )),
          Effect.zipRight(Effect.never)
        )
      ),
      Effect.tapErrorTag("Stopped", () =>
        Effect.try(() => process.kill(generation.child.pid, "SIGTERM")).pipe(
          Effect.zipRight(Deferred.await(generation.child.exited)),
          Effect.timeout(options.upgradeTimeout),
          Effect.ignore
        ))
    )

  const awaitReady = (generation: Generation, go?: Parameters<typeof Spawn.awaitReady>[1]["go"]) =>
    Spawn.awaitReady(generation.child, {
      timeout: options.upgradeTimeout,
      probation: options.probation,
      stop: stopped,
      go
    })

  /** The parked generation, if it is still alive, for this upgrade. */
  const takeParked = Effect.suspend(() => {
    const candidate = parked
    parked = undefined
    return candidate === undefined
      ? Effect.succeed(undefined)
      : Effect.map(Deferred.isDone(candidate.child.exited), (dead) => dead ? undefined : candidate)
  })

  const discardParked = Effect.suspend(() => {
    const candidate = parked
    parked = undefined
    return candidate === undefined ? Effect.void : candidate.child.kill
  })

  const prepare = lock.withPermits(1)(
    Effect.gen(function*() {
      const old = current
      if (stopping) return yield* new Stopped({ childPid: undefined })
      if (old === undefined) return yield* new NotReady({ pid: starting?.child.pid ?? process.pid })
      if (parked !== undefined) {
        yield* Log.info(`replacing the prepared generation (pid ${parked.child.pid})`)
        yield* discardParked
      }
      const next = yield* start(old.number + 1, old.child.pid, true)
      const result = yield* Effect.exit(
        Spawn.awaitParked(next.child, { timeout: options.upgradeTimeout, stop: stopped })
      )
      if (Exit.isFailure(result)) {
        yield* next.child.kill
        return yield* Effect.failCause(result.cause)
      }
      parked = next
      yield* Log.info(`generation ${next.number} (pid ${next.child.pid}) is prepared`)
      return { pid: next.child.pid }
    })
  )

  // The listeners a generation handed up replace the ones held before.
  const adopt = (generation: Generation) => {
    for (const [key, { handle }] of held) {
      if (generation.offered.get(key)?.handle !== handle) Handles.closeHandle(handle)
    }
    held = generation.offered
  }

  const release = (generation: Generation) => {
    for (const { handle } of generation.offered.values()) Handles.closeHandle(handle)
  }

  const upgrade = lock.withPermits(1)(
    Effect.gen(function*() {
      const old = current
      if (stopping) return yield* new Stopped({ childPid: undefined })
      if (old === undefined) return yield* new NotReady({ pid: starting?.child.pid ?? process.pid })
      upgrading = true
      yield* announce.reloading(old.number + 1)
      const prepared = yield* takeParked
      const next = prepared ?? (yield* start(old.number + 1, old.child.pid))
      if (prepared !== undefined) yield* Log.info(`handing over to the prepared generation (pid ${next.child.pid})`)
      const result = yield* Effect.exit(awaitReady(
        next,
        prepared === undefined ? undefined : { manifest: manifestFor(next.number, old.child.pid), handover: handover() }
      ))
      if (Exit.isFailure(result)) {
        yield* next.child.kill
        release(next)
        yield* announce.failed(old.number)
        return yield* Effect.failCause(result.cause)
      }
      adopt(next)
      current = next
      yield* old.child.post({ tableflip: "exit", result: { _tag: "Upgraded", pid: next.child.pid } })
      yield* Deferred.await(old.child.exited).pipe(
        Effect.zipRight(next.child.post({ tableflip: "predecessor-gone" })),
        Effect.forkScoped
      )
      yield* announce.upgraded(next.child.pid, next.number)
      yield* Log.info(`upgraded to pid ${next.child.pid} (generation ${next.number})`)
      return { pid: next.child.pid }
    }).pipe(Effect.ensuring(Effect.sync(() => {
      upgrading = false
    })))
  )

  const recorded = (kind: "upgrade" | "prepare") =>
    Effect.suspend(() => {
      const startedAt = Date.now()
      return (kind === "upgrade" ? upgrade : prepare).pipe(
        Effect.tapError((error) => Log.warning(`${kind} failed: ${error.message}`)),
        Effect.onExit((exit) =>
          options.pidFile === undefined
            ? Effect.void
            : Errors.recordOutcome(options.pidFile, startedAt, exit, false, kind === "prepare")
        )
      )
    })

  // A generation asked for an upgrade or a prepare: answer it, typed.
  const answer = (child: Spawn.Child, request: Channel.UpgradeRequest | Channel.PrepareRequest) =>
    (upgrading ? Effect.fail(new UpgradeInProgress({ childPid: undefined })) : recorded(request.tableflip)).pipe(
      Effect.matchEffect({
        onFailure: (error) => child.post(Channel.answerTo(request, { _tag: "Failed", error: Errors.serialize(error) })),
        onSuccess: ({ pid }) => child.post(Channel.answerTo(request, { _tag: "Upgraded", pid }))
      })
    )

  // The current generation exiting on its own ends the runner with its code, unless an
  // upgrade in flight replaces it first.
  const onExit = (generation: Generation, exited: Spawn.Exited) =>
    Effect.suspend(() => {
      // Outside the lock: a prepare or an upgrade may hold it meanwhile.
      if (parked !== generation) return Effect.void
      parked = undefined
      return Log.warning(
        `the prepared generation (pid ${generation.child.pid}) exited ${
          exited.signal === null ? `with code ${exited.code}` : `on ${exited.signal}`
        } while parked; the next upgrade starts one afresh`
      )
    }).pipe(Effect.zipRight(
      lock.withPermits(1)(Effect.suspend(() => {
        if (current !== generation) return Effect.void
        return Log.info(
          `generation ${generation.number} (pid ${generation.child.pid}) exited ${
            exited.signal === null ? `with code ${exited.code}` : `on ${exited.signal}`
          }`
        ).pipe(Effect.zipRight(Deferred.succeed(finished, exitCode(exited))))
      }))
    ))

  const stop = (signal: NodeJS.Signals | "exit") =>
    Effect.suspend(() => {
      if (stopping) return Effect.void
      stopping = true
      return Effect.zipRight(
        announce.stopping(signal),
        Log.info(`${signal}: stopping every generation`)
      ).pipe(
        Effect.zipRight(Deferred.succeed(stopped, undefined)),
        // A parked generation reads no message before `go`: it is killed.
        Effect.zipRight(discardParked),
        // A pending generation is killed by its upgrade; the others stop and drain.
        Effect.zipRight(
          Effect.forEach([...live], (child) => child.post({ tableflip: "stop" }), {
            concurrency: "unbounded",
            discard: true
          })
        )
      )
    })

  // SIGHUPs during an upgrade fold into one more attempt after it, as in `Upgrader.layerSignal`.
  const requests = yield* Queue.dropping<void>(1)
  yield* Queue.take(requests).pipe(
    Effect.zipRight(Effect.ignore(recorded("upgrade"))),
    Effect.forever,
    Effect.forkScoped
  )
  const onSignal = (signal: NodeJS.Signals) => () => {
    if (signal === "SIGHUP") Queue.unsafeOffer(requests, undefined)
    else if ((STOP_SIGNALS as ReadonlyArray<string>).includes(signal)) runFork(stop(signal))
    else if (current !== undefined && live.has(current.child)) {
      try {
        process.kill(current.child.pid, signal)
      } catch {
        // It exited meanwhile.
      }
    }
  }
  const handlers = [...STOP_SIGNALS, ...FORWARDED, "SIGHUP" as const].map((signal) =>
    [signal, onSignal(signal)] as const
  )
  yield* Effect.acquireRelease(
    Effect.sync(() => {
      for (const [signal, handler] of handlers) process.on(signal, handler)
    }),
    () =>
      Effect.sync(() => {
        for (const [signal, handler] of handlers) process.off(signal, handler)
      })
  )
  // As PID 1 (a container), orphans of the app are re-parented here and must be reaped.
  yield* Reaper.install(live)
  if (options.pidFile !== undefined) {
    const pidFile = options.pidFile
    // Whatever way the runner ends, the PID file leaves with it (unless it names another process by then).
    yield* Effect.acquireRelease(
      PidFile.write(pidFile),
      () => PidFile.removeIfOwn(pidFile).pipe(Effect.catchAll((error) => Log.warning(error.message)))
    )
  }
  const first = yield* start(1, undefined)
  starting = first
  const ready = yield* Effect.exit(awaitFirst(first))
  starting = undefined
  if (Exit.isFailure(ready)) {
    yield* first.child.kill
    yield* stopping
      ? Log.info(`stopped before generation 1 said ready: ${label}`)
      : Log.error(`the app did not start: ${label}`)
    const exited = yield* Deferred.poll(first.child.exited)
    return exited._tag === "Some" ? exitCode(yield* exited.value) : 1
  }
  adopt(first)
  current = first
  yield* announce.ready(1)
  yield* Log.info(`serving: generation 1 is pid ${first.child.pid}`)

  const code = yield* Deferred.await(finished)
  // Drained generations may still be finishing; the runner leaves last.
  yield* stop("exit")
  yield* Effect.forEach([...live], (child) => Deferred.await(child.exited), { discard: true })
  for (const { handle } of held.values()) Handles.closeHandle(handle)
  return code
})
