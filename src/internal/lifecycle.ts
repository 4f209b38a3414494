/**
 * One generation's lifecycle, wired from its rooms: the state machine
 * (`lifecycle/state.ts`, where the diagram is), the record its steps share
 * (`lifecycle/deps.ts`), one upgrade or prepare attempt
 * (`lifecycle/attempt.ts`) and how it ended (`lifecycle/outcome.ts`), the
 * successor strategy (`lifecycle/successor.ts`: spawn the next generation,
 * or ask the runner), state handoff (`lifecycle/handoff.ts`), and here the
 * assembly and the steps around an upgrade: `ready`, `stop`, and following
 * the previous generation or the runner.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import type * as Scope from "effect/Scope"
import * as Path from "node:path"
import * as PidFile from "../PidFile.js"
import type { HandoverError, PidFileError } from "../UpgradeError.js"
import { NotSupported, SpawnError } from "../UpgradeError.js"
import type { ExitReason, Options, Upgrader } from "../Upgrader.js"
import * as Announce from "./announce.js"
import * as CompileCache from "./compileCache.js"
import * as Fx from "./fx.js"
import type * as Attempt from "./lifecycle/attempt.js"
import { apply, type Deps } from "./lifecycle/deps.js"
import * as Handoff from "./lifecycle/handoff.js"
import * as LifecycleState from "./lifecycle/state.js"
import * as Successor from "./lifecycle/successor.js"
import * as Link from "./link.js"
import * as Log from "./log.js"
import * as Protocol from "./protocol.js"
import { Registry } from "./registry.js"
import type * as Spawn from "./spawn.js"
import * as Systemd from "./systemd.js"

/** @internal */
export type Lifecycle = Fx.ShapeOf<Upgrader> & { readonly registry: Registry }

/** @internal */
export const DEFAULT_UPGRADE_TIMEOUT = Duration.minutes(1)

/**
 * What tests may change and users may not: not part of `Options`, so no
 * public API carries it.
 *
 * @internal
 */
export interface Internal {
  /** Starts the next generation; a test's fake keeps the lifecycle in-process. Default: `Spawn.spawn`. */
  readonly spawner?: Successor.Spawner | undefined
}

/** @internal */
export const make = Effect.fnUntraced(function*(options: Options, internal: Internal = {}) {
  if (process.platform === "win32") {
    return yield* new NotSupported({
      platform: process.platform,
      reason: "a child process cannot inherit listening sockets by fd; use UpgraderTest.layer"
    })
  }
  // A prepared generation parks in here until its parent's `go`.
  const link = yield* openLink
  const { deps, handoff } = yield* assemble(options, internal, link)
  const stop = stopping(deps)
  // Released because the app failed: say so before "stopped", which would otherwise read as the cause.
  yield* Effect.addFinalizer((exit) =>
    Exit.isFailure(exit) && !Fx.isInterrupted(exit)
      ? Effect.andThen(Log.error(`the app failed: ${Cause.squash(exit.cause)}; stopping`), stop)
      : stop
  )
  if (link !== undefined && deps.supervised) yield* followRunner(deps, link, stop)
  if (link !== undefined) yield* followPredecessor(deps, link)
  return {
    pid: process.pid,
    generation: deps.generation,
    hasParent: link !== undefined,
    ready: ready(deps),
    upgrade: Effect.suspend(() => {
      const startedAt = Date.now()
      return Effect.flatMap(attempts, (Attempt) => Attempt.upgrade(deps, startedAt))
    }),
    prepare: Effect.suspend(() => {
      const startedAt = Date.now()
      return Effect.flatMap(attempts, (Attempt) => Attempt.prepare(deps, startedAt))
    }),
    exit: Deferred.await(deps.exitReason),
    stop,
    waitForParent: link === undefined ? Effect.void : Deferred.await(link.predecessorGone),
    offerState: handoff.offer,
    inheritedState: link?.state,
    unready: (reason) => link === undefined ? Effect.void : link.notifyUnready(reason),
    registry: deps.registry
  } satisfies Lifecycle
})

/**
 * The upgrade path (`lifecycle/attempt.ts`, `outcome.ts`, the metrics), loaded at the first
 * upgrade or prepare: a generation that is never upgraded does not pay for it before `ready`.
 * `scripts/build-dist.mjs` keeps it out of the bundled core.
 *
 * A load that fails (a process out of fds: EMFILE) fails that attempt with a typed SpawnError, as the
 * spawn itself would. Node 20 remembers a failed import for the life of the process, so a later
 * attempt asks for the module under a fresh URL; no load before it succeeded, so there is still one
 * copy of the module.
 */
const attempts: Effect.Effect<typeof Attempt, SpawnError> = Effect.suspend(() => {
  if (upgradePath !== undefined) return Effect.succeed(upgradePath)
  const retry = failedLoads
  return Effect.tryPromise({
    try: (): Promise<typeof Attempt> => retry === 0 ? import("./lifecycle/attempt.js") : import(retryUrl(retry)),
    catch: (cause) => {
      failedLoads = Math.max(failedLoads, retry + 1)
      return new SpawnError({ command: "loading the upgrade path (lifecycle/attempt.js)", cause })
    }
  }).pipe(Effect.tap((loaded) => Effect.sync(() => void (upgradePath = loaded))))
})
let upgradePath: typeof Attempt | undefined
let failedLoads = 0
/** A URL the bundler leaves alone: the retry is for Node's loader, not esbuild's. */
const retryUrl = (retry: number): string => {
  const url = new URL("./lifecycle/attempt.js", import.meta.url)
  url.search = `retry=${retry}`
  return url.href
}

/** The handover from the previous generation in this process's environment, if any, taken over. */
const openLink: Effect.Effect<Link.Link | undefined, HandoverError, Scope.Scope> = Effect.suspend(() => {
  const taken = Protocol.take()
  return taken === undefined ? Effect.succeed(undefined) : Fx.matchResult(taken, {
    onFailure: Effect.fail,
    onSuccess: Link.open
  })
})

/** Builds this generation's record from the options and what it inherited. */
const assemble = Effect.fnUntraced(function*(options: Options, internal: Internal, link: Link.Link | undefined) {
  const manifest = link?.manifest
  const generation = manifest?.generation ?? 1
  const cwd = manifest?.cwd ?? process.cwd()
  const supervised = link?.supervised === true
  const machine = LifecycleState.machine()
  // Only a first generation takes systemd's sockets; later ones get them through the handover.
  const registry = new Registry(link?.inherited ?? Systemd.take(), {
    mayUnlink: (boundHere) => LifecycleState.mayUnlink(machine.get(), boundHere, manifest === undefined)
  })
  const handoff = Handoff.make(options.maxStateBytes)
  // Made in place rather than yielded: each step of the layer's first run before `ready` is CPU
  // every generation pays (issue 16), and nothing here needs the fiber.
  const stopSignal = Fx.makeDeferredUnsafe<void>()
  const scope = yield* Effect.scope
  Log.identify(`generation ${generation}`)
  const deps: Deps = {
    generation,
    link,
    supervised,
    // Under a runner the service's pid is the runner's, and so are the PID file and its outcomes.
    pidFile: options.pidFile === undefined || options.pidFile === "" || supervised
      ? undefined
      : Path.resolve(cwd, options.pidFile),
    machine,
    registry,
    announce: Announce.make("generation"),
    successor: supervised ? Successor.viaRunner(link!) : Successor.spawning({
      generation,
      cwd,
      registry,
      handoff,
      command: () => command(options, cwd),
      timeout: Fx.decodeDuration(options.upgradeTimeout ?? DEFAULT_UPGRADE_TIMEOUT),
      probation: Fx.decodeDuration(options.probation ?? Duration.zero),
      unregisteredListeners: options.unregisteredListeners,
      stop: stopSignal,
      scope,
      spawner: internal.spawner
    }),
    exitReason: Fx.makeDeferredUnsafe<ExitReason>(),
    stopSignal,
    scope,
    gate: Fx.makeSemaphoreUnsafe(1),
    pending: undefined
  }
  return { deps, handoff }
})

// Read at each upgrade: the environment the next generation starts with is the one at that time.
const command = (options: Options, cwd: string): Spawn.Command => ({
  execPath: options.command?.execPath ?? process.execPath,
  args: options.command?.args ?? [...process.execArgv, ...process.argv.slice(1)],
  cwd: options.command?.cwd ?? cwd,
  env: CompileCache.handOn(options.command?.env ?? process.env)
})

/**
 * `Upgrader.ready`: writes the PID file, lets go of what nobody claimed, and tells whoever waits.
 * No span: a generation's first span costs it about a millisecond of CPU before it serves (issue
 * 16); the spans are on the upgrade and the prepare, where the time goes.
 */
const ready = (deps: Deps): Effect.Effect<void, PidFileError> =>
  Effect.gen(function*() {
    const { link, registry, supervised } = deps
    if (deps.pidFile !== undefined) yield* PidFile.write(deps.pidFile)
    const closed = registry.closeUnclaimed()
    if (closed.length > 0) yield* Log.info(`closed inherited descriptors nobody claimed: ${closed.join(", ")}`)
    // Never refused (only `Begin` is); in place rather than as an effect, as in `assemble`.
    deps.machine.apply({ _tag: "MarkReady" })
    if (supervised && registry.unsupervisable().length > 0) {
      yield* Log.warning(
        `a runner keeps listening sockets only; ${
          registry.unsupervisable().join(", ")
        } will not reach the next generation`
      )
    }
    if (link !== undefined) yield* link.notifyReady(supervised ? registry.listeners() : [])
    // While the previous generation lives, it tells systemd about this one: it is the main pid
    // systemd listens to, and it decides when the upgrade has succeeded (after any probation).
    if (link === undefined || (yield* Deferred.isDone(link.parentGone))) {
      yield* deps.announce.ready(deps.generation)
    }
    yield* Log.info("ready")
  })

/** `Upgrader.stop`, also run when the layer's scope closes. */
const stopping = (deps: Deps): Effect.Effect<void> =>
  Effect.gen(function*() {
    const previous = deps.machine.get()._tag
    if (previous === "Upgraded" || previous === "Stopped") return
    yield* apply(deps, { _tag: "Stop" })
    yield* deps.announce.stopping()
    yield* Deferred.succeed(deps.stopSignal, undefined)
    // After the signal, which ends a prepare in flight: then the parked one, if any, goes.
    yield* deps.gate.withPermits(1)(deps.successor.discard)
    // By the time `exit` completes, a pending new generation is killed and reaped,
    // and its `upgrade` caller has its Stopped error.
    if (deps.pending !== undefined) yield* Fiber.await(deps.pending)
    yield* Deferred.succeed(deps.exitReason, "stopped")
    // Stopped for good: the PID file goes too, unless a newer process has written it since.
    if (deps.pidFile !== undefined) {
      yield* PidFile.removeIfOwn(deps.pidFile).pipe(Fx.catchAll((error) => Log.warning(error.message)))
    }
    yield* Log.info("stopped")
  }).pipe(Effect.ignore)

/** Under a runner: its `stop` and `exit` messages end this generation. */
const followRunner = (deps: Deps, link: Link.Link, stop: Effect.Effect<void>) =>
  Effect.gen(function*() {
    // A message, not a signal: a second SIGINT after a terminal's Ctrl-C would kill an app
    // whose runtime (NodeRuntime.runMain) handles only the first.
    yield* Deferred.await(link.stopRequested).pipe(Effect.andThen(stop), Effect.forkScoped)
    // The runner has the next generation ready: step down.
    yield* Deferred.await(link.exitRequested).pipe(
      Effect.flatMap((childPid) => Effect.ignore(apply(deps, { _tag: "StepDown", childPid }))),
      Effect.andThen(Deferred.succeed(deps.exitReason, "upgraded")),
      Effect.andThen(Log.info("the runner started the next generation; stepping down")),
      Effect.forkScoped
    )
  })

/** Logs when the previous generation has exited; a runner's first generation follows nobody. */
const followPredecessor = (deps: Deps, link: Link.Link) =>
  deps.supervised && link.manifest.predecessorPid === undefined
    ? Effect.void
    : Deferred.await(link.predecessorGone).pipe(
      Effect.andThen(Log.info(
        `the previous generation (pid ${link.manifest.predecessorPid ?? link.parentPid}) has exited`
      )),
      Effect.forkScoped,
      Effect.asVoid
    )
