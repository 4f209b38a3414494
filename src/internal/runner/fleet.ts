/**
 * The runner's state, in one record: which generation serves, which is
 * starting or parked, and the listeners it holds between them; with the
 * small moves on it (adopt a generation's listeners, take or discard the
 * parked one, stop). The steps that start, prepare and upgrade generations
 * are in `steps.ts`; each is a function of the `Fleet`.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberSet from "effect/FiberSet"
import type * as Scope from "effect/Scope"
import { NotReady, Stopped } from "../../UpgradeError.js"
import type { UpgradeError } from "../../UpgradeError.js"
import * as Announce from "../announce.js"
import * as Fx from "../fx.js"
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

/**
 * How generations are started: `Spawn.spawn`, or a fake in tests (the seam
 * `test/runnerFleet.test.ts` drives the state logic through).
 *
 * @internal
 */
export type Spawner = typeof Spawn.spawn

/** Everything the runner knows, in one record. @internal */
export interface Fleet {
  readonly settings: Settings
  readonly spawn: Spawner
  readonly announce: Announce.Announcer
  /** Runs an effect started from a Node callback in the runner's runtime, ending with its scope. */
  readonly runFork: <A, E>(effect: Effect.Effect<A, E, Scope.Scope>) => unknown
  /** Upgrades and prepares take turns. */
  readonly lock: Fx.Semaphore
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

/** @internal */
export const ended = ({ code, signal }: Spawn.Exited) => signal === null ? `with code ${code}` : `on ${signal}`

/** The manifest generation `number` starts with (or, prepared, takes over with at `go`). @internal */
export const manifestFor = (
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

/** The listeners held, as a generation receives them. @internal */
export const handover = (fleet: Fleet): Handover => {
  const entries = [...fleet.held.values()]
  return {
    descriptors: entries.map((h) => h.descriptor),
    sockets: entries.map((h) => ({ key: h.descriptor.key, handle: h.handle })),
    fds: []
  }
}

/** The parked generation, if it is still alive, for this upgrade. @internal */
export const takeParked = (fleet: Fleet) =>
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

/** Why no upgrade or prepare can begin now, if so. @internal */
export const refusal = (fleet: Fleet): UpgradeError | undefined =>
  fleet.stopping
    ? new Stopped({ childPid: undefined })
    : fleet.current === undefined
    ? new NotReady({ pid: fleet.starting?.child.pid ?? process.pid })
    : undefined

/** The listeners a generation handed up replace the ones held before. @internal */
export const adopt = (fleet: Fleet, generation: Generation) => {
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

/** Closes the listeners a generation handed up (it failed, so they are not held). @internal */
export const release = (generation: Generation) => {
  for (const { handle } of generation.offered.values()) Handles.closeHandle(handle)
}

/** Stops every generation: a parked one is killed, a pending one by its upgrade, the others drain. @internal */
export const stop = (fleet: Fleet, signal: NodeJS.Signals | "exit") =>
  Effect.suspend(() => {
    if (fleet.stopping) return Effect.void
    fleet.stopping = true
    return Effect.andThen(
      fleet.announce.stopping(signal),
      Log.info(`${signal}: stopping every generation`)
    ).pipe(
      Effect.andThen(Deferred.succeed(fleet.stopped, undefined)),
      // A parked generation reads no message before `go`: it is killed.
      Effect.andThen(discardParked(fleet)),
      Effect.andThen(
        Effect.forEach([...fleet.live], (child) => child.post({ tableflip: "stop" }), {
          concurrency: "unbounded",
          discard: true
        })
      )
    )
  })

/**
 * A fleet with no generation yet. Effects started from Node callbacks run in
 * the caller's runtime (its logger) and end with its scope.
 *
 * @internal
 */
export const make = (settings: Settings, spawn: Spawner = Spawn.spawn, announce = Announce.make("runner")) =>
  Effect.gen(function*() {
    const fleet: Fleet = {
      settings,
      spawn,
      announce,
      runFork: yield* FiberSet.makeRuntime<Scope.Scope>(),
      lock: yield* Fx.makeSemaphore(1),
      finished: yield* Deferred.make<number>(),
      stopped: yield* Deferred.make<void>(),
      live: new Set(),
      held: new Map(),
      current: undefined,
      starting: undefined,
      parked: undefined,
      stopping: false,
      upgrading: false
    }
    return fleet
  })
