/**
 * The runner's generations: which one serves, which is starting or parked,
 * the listeners it holds between them, and the steps that move them
 * (start, prepare, upgrade, exit, stop). Each step is a function of the
 * `Fleet`, the one place the runner's state lives.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Scope from "effect/Scope"
import { NotReady, Stopped, UpgradeInProgress } from "../../UpgradeError.js"
import type { UpgradeError } from "../../UpgradeError.js"
import type * as Announce from "../announce.js"
import * as Channel from "../channel.js"
import * as Errors from "../errors.js"
import * as Handles from "../handles.js"
import * as Log from "../log.js"
import * as Protocol from "../protocol.js"
import type { Handover } from "../registry.js"
import * as Spawn from "../spawn.js"

/** A listening socket the runner holds for the next generation. @internal */
export interface Held {
  readonly descriptor: Protocol.SocketDescriptor
  readonly handle: object
}

/** @internal */
export interface Generation {
  readonly number: number
  readonly child: Spawn.Child
  /** The listeners it handed up at `ready`. */
  readonly offered: Map<string, Held>
}

/** @internal */
export interface Settings {
  readonly command: Spawn.Command
  readonly pidFile?: string | undefined
  readonly upgradeTimeout: Duration.Duration
  readonly probation: Duration.Duration
}

/** Everything the runner knows, in one record. @internal */
export interface Fleet {
  readonly settings: Settings
  readonly announce: Announce.Announcer
  /** Runs an effect started from a Node callback in the runner's runtime, ending with its scope. */
  readonly runFork: <A, E>(effect: Effect.Effect<A, E, Scope.Scope>) => unknown
  /** Upgrades and prepares take turns. */
  readonly lock: Effect.Semaphore
  /** Completes, with the exit code, when the serving generation exits on its own. */
  readonly finished: Deferred.Deferred<number>
  /** Completes when the runner stops: every wait for a child ends then. */
  readonly stopped: Deferred.Deferred<void>
  readonly live: Set<Spawn.Child>
  held: Map<string, Held>
  current: Generation | undefined
  /** The first generation until it says ready: it cannot be upgraded yet. */
  starting: Generation | undefined
  /** A prepared generation, parked until the next upgrade. */
  parked: Generation | undefined
  stopping: boolean
  upgrading: boolean
}

/** The exit code a shell would report for a child that ended this way. @internal */
export const exitCode = ({ code, signal }: Spawn.Exited): number =>
  code ?? 128 + (signal === null ? 0 : (process.getBuiltinModule("node:os").constants.signals[signal] ?? 0))

const ended = ({ code, signal }: Spawn.Exited) => signal === null ? `with code ${code}` : `on ${signal}`

const manifestFor = (
  fleet: Fleet,
  number: number,
  predecessorPid: number | undefined,
  extra: { readonly prepared?: boolean } = {}
): Protocol.Manifest => ({
  version: Protocol.VERSION,
  generation: number,
  parentPid: process.pid,
  cwd: fleet.settings.command.cwd,
  fds: [...fleet.held.values()].map((h) => h.descriptor),
  supervisor: true,
  ...Protocol.upgradeTimeoutField(fleet.settings.upgradeTimeout),
  ...(predecessorPid === undefined ? {} : { predecessorPid }),
  ...extra
})

const handover = (fleet: Fleet): Handover => {
  const entries = [...fleet.held.values()]
  return {
    descriptors: entries.map((h) => h.descriptor),
    sockets: entries.map((h) => ({ key: h.descriptor.key, handle: h.handle })),
    fds: []
  }
}

/** Starts generation `number`; a prepared one gets no socket until `go`. @internal */
export const start = (fleet: Fleet, number: number, predecessorPid: number | undefined, prepared = false) =>
  Effect.gen(function*() {
    const offered = new Map<string, Held>()
    const child = yield* Spawn.spawn(
      fleet.settings.command,
      manifestFor(fleet, number, predecessorPid, prepared ? { prepared: true } : {}),
      prepared ? { descriptors: [], sockets: [], fds: [] } : handover(fleet),
      (child) => ({
        descriptor: ({ descriptor }, handle) => {
          // A second socket under one key would replace the first, which nobody would close.
          if (offered.has(descriptor.key)) Handles.closeHandle(handle)
          else offered.set(descriptor.key, { descriptor, handle })
        },
        upgrade: (request) => fleet.runFork(answer(fleet, child, request)),
        prepare: (request) => fleet.runFork(answer(fleet, child, request))
      })
    )
    fleet.live.add(child)
    const generation: Generation = { number, child, offered }
    // Watched before anything can fail, so that every child leaves `live` when it exits.
    yield* Deferred.await(child.exited).pipe(
      Effect.tap(() => fleet.live.delete(child)),
      Effect.flatMap((exited) => onExit(fleet, generation, exited)),
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
 *
 * @internal
 */
export const awaitFirst = (fleet: Fleet, generation: Generation) => {
  const { upgradeTimeout } = fleet.settings
  return Spawn.awaitReady(generation.child, {
    timeout: Duration.infinity,
    probation: Duration.zero,
    stop: fleet.stopped
  })
    .pipe(
      Effect.raceFirst(
        Effect.sleep(upgradeTimeout).pipe(
          Effect.zipRight(Log.warning(
            `generation 1 (pid ${generation.child.pid}) has not said ready within ${
              Duration.format(upgradeTimeout)
            }: is the app built on effect-tableflip's Upgrader, and does it call ready? ` +
              "The runner cannot upgrade it until it does"
          )),
          Effect.zipRight(Effect.never)
        )
      ),
      Effect.tapErrorTag("Stopped", () =>
        Effect.try(() => process.kill(generation.child.pid, "SIGTERM")).pipe(
          Effect.zipRight(Deferred.await(generation.child.exited)),
          Effect.timeout(upgradeTimeout),
          Effect.ignore
        ))
    )
}

/** The parked generation, if it is still alive, for this upgrade. */
const takeParked = (fleet: Fleet) =>
  Effect.suspend(() => {
    const candidate = fleet.parked
    fleet.parked = undefined
    return candidate === undefined
      ? Effect.succeed(undefined)
      : Effect.map(Deferred.isDone(candidate.child.exited), (dead) => dead ? undefined : candidate)
  })

/** Kills the parked generation, if there is one. @internal */
export const discardParked = (fleet: Fleet) =>
  Effect.suspend(() => {
    const candidate = fleet.parked
    fleet.parked = undefined
    return candidate === undefined ? Effect.void : candidate.child.kill
  })

/** Why no upgrade or prepare can begin now, if so. */
const refusal = (fleet: Fleet): UpgradeError | undefined =>
  fleet.stopping
    ? new Stopped({ childPid: undefined })
    : fleet.current === undefined
    ? new NotReady({ pid: fleet.starting?.child.pid ?? process.pid })
    : undefined

const prepare = (fleet: Fleet) =>
  fleet.lock.withPermits(1)(Effect.gen(function*() {
    const refused = refusal(fleet)
    if (refused !== undefined) return yield* refused
    const old = fleet.current!
    if (fleet.parked !== undefined) {
      yield* Log.info(`replacing the prepared generation (pid ${fleet.parked.child.pid})`)
      yield* discardParked(fleet)
    }
    const next = yield* start(fleet, old.number + 1, old.child.pid, true)
    const result = yield* Effect.exit(
      Spawn.awaitParked(next.child, { timeout: fleet.settings.upgradeTimeout, stop: fleet.stopped })
    )
    if (Exit.isFailure(result)) {
      yield* next.child.kill
      return yield* Effect.failCause(result.cause)
    }
    fleet.parked = next
    yield* Log.info(`generation ${next.number} (pid ${next.child.pid}) is prepared`)
    return { pid: next.child.pid }
  }))

// The listeners a generation handed up replace the ones held before.
const adopt = (fleet: Fleet, generation: Generation) => {
  for (const [key, { handle }] of fleet.held) {
    if (generation.offered.get(key)?.handle !== handle) Handles.closeHandle(handle)
  }
  fleet.held = generation.offered
}

/** The first generation is ready: it serves, and its listeners are held from now on. @internal */
export const serving = (fleet: Fleet, generation: Generation) =>
  Effect.sync(() => {
    adopt(fleet, generation)
    fleet.current = generation
  })

const release = (generation: Generation) => {
  for (const { handle } of generation.offered.values()) Handles.closeHandle(handle)
}

/** The next generation (the parked one, if it lives) takes over from the serving one, or fails. */
const handOver = (fleet: Fleet, old: Generation) =>
  Effect.gen(function*() {
    yield* fleet.announce.reloading(old.number + 1)
    const prepared = yield* takeParked(fleet)
    const next = prepared ?? (yield* start(fleet, old.number + 1, old.child.pid))
    if (prepared !== undefined) yield* Log.info(`handing over to the prepared generation (pid ${next.child.pid})`)
    const go = prepared === undefined
      ? undefined
      : { manifest: manifestFor(fleet, next.number, old.child.pid), handover: handover(fleet) }
    const { probation, upgradeTimeout } = fleet.settings
    const result = yield* Effect.exit(
      Spawn.awaitReady(next.child, { timeout: upgradeTimeout, probation, stop: fleet.stopped, go })
    )
    if (Exit.isFailure(result)) {
      yield* next.child.kill
      release(next)
      yield* fleet.announce.failed(old.number)
      return yield* Effect.failCause(result.cause)
    }
    return next
  })

const upgrade = (fleet: Fleet) =>
  fleet.lock.withPermits(1)(
    Effect.gen(function*() {
      const refused = refusal(fleet)
      if (refused !== undefined) return yield* refused
      const old = fleet.current!
      fleet.upgrading = true
      const next = yield* handOver(fleet, old)
      adopt(fleet, next)
      fleet.current = next
      yield* old.child.post({ tableflip: "exit", result: { _tag: "Upgraded", pid: next.child.pid } })
      yield* Deferred.await(old.child.exited).pipe(
        Effect.zipRight(next.child.post({ tableflip: "predecessor-gone" })),
        Effect.forkScoped
      )
      yield* fleet.announce.upgraded(next.child.pid, next.number)
      yield* Log.info(`upgraded to pid ${next.child.pid} (generation ${next.number})`)
      return { pid: next.child.pid }
    }).pipe(Effect.ensuring(Effect.sync(() => {
      fleet.upgrading = false
    })))
  )

/** An upgrade or a prepare, its outcome recorded beside the PID file. @internal */
export const recorded = (fleet: Fleet, kind: "upgrade" | "prepare") =>
  Effect.suspend(() => {
    const startedAt = Date.now()
    const { pidFile } = fleet.settings
    return (kind === "upgrade" ? upgrade(fleet) : prepare(fleet)).pipe(
      Effect.tapError((error) => Log.warning(`${kind} failed: ${error.message}`)),
      Effect.onExit((exit) =>
        pidFile === undefined ? Effect.void : Errors.recordOutcome(pidFile, startedAt, exit, false, kind === "prepare")
      )
    )
  })

// A generation asked for an upgrade or a prepare: answer it, typed.
const answer = (fleet: Fleet, child: Spawn.Child, request: Channel.UpgradeRequest | Channel.PrepareRequest) =>
  (fleet.upgrading ? Effect.fail(new UpgradeInProgress({ childPid: undefined })) : recorded(fleet, request.tableflip))
    .pipe(
      Effect.matchEffect({
        onFailure: (error) => child.post(Channel.answerTo(request, { _tag: "Failed", error: Errors.serialize(error) })),
        onSuccess: ({ pid }) => child.post(Channel.answerTo(request, { _tag: "Upgraded", pid }))
      })
    )

// The current generation exiting on its own ends the runner with its code, unless an
// upgrade in flight replaces it first.
const onExit = (fleet: Fleet, generation: Generation, exited: Spawn.Exited) =>
  Effect.suspend(() => {
    // Outside the lock: a prepare or an upgrade may hold it meanwhile.
    if (fleet.parked !== generation) return Effect.void
    fleet.parked = undefined
    return Log.warning(
      `the prepared generation (pid ${generation.child.pid}) exited ${
        ended(exited)
      } while parked; the next upgrade starts one afresh`
    )
  }).pipe(Effect.zipRight(
    fleet.lock.withPermits(1)(Effect.suspend(() => {
      if (fleet.current !== generation) return Effect.void
      return Log.info(`generation ${generation.number} (pid ${generation.child.pid}) exited ${ended(exited)}`).pipe(
        Effect.zipRight(Deferred.succeed(fleet.finished, exitCode(exited)))
      )
    }))
  ))

/** Stops every generation: a parked one is killed, a pending one by its upgrade, the others drain. @internal */
export const stop = (fleet: Fleet, signal: NodeJS.Signals | "exit") =>
  Effect.suspend(() => {
    if (fleet.stopping) return Effect.void
    fleet.stopping = true
    return Effect.zipRight(
      fleet.announce.stopping(signal),
      Log.info(`${signal}: stopping every generation`)
    ).pipe(
      Effect.zipRight(Deferred.succeed(fleet.stopped, undefined)),
      // A parked generation reads no message before `go`: it is killed.
      Effect.zipRight(discardParked(fleet)),
      Effect.zipRight(
        Effect.forEach([...fleet.live], (child) => child.post({ tableflip: "stop" }), {
          concurrency: "unbounded",
          discard: true
        })
      )
    )
  })
