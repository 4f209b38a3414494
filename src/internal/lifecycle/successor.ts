/**
 * How a generation gets its successor, chosen once: it spawns the next
 * generation itself (`spawning`), or, under `effect-tableflip run`, it asks
 * the runner, which spawns every generation (`viaRunner`).
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Scope from "effect/Scope"
import type { UpgradeError } from "../../UpgradeError.js"
import { SpawnError, UnregisteredListener } from "../../UpgradeError.js"
import * as UpgradeErrors from "../errors.js"
import * as Fx from "../fx.js"
import type { Link } from "../link.js"
import * as Log from "../log.js"
import * as Protocol from "../protocol.js"
import type { Handover, Registry } from "../registry.js"
import * as Spawn from "../spawn.js"
import type { Handoff } from "./handoff.js"

/** @internal */
export interface Successor {
  /**
   * Starts the next generation (or hands over to the parked one) and waits
   * until it is ready; `onSpawned` hears its pid as soon as it has one.
   */
  readonly upgrade: (
    onSpawned: (pid: number) => Effect.Effect<void>
  ) => Effect.Effect<{ readonly pid: number }, UpgradeError>
  /** Starts the next generation and waits until it is parked. */
  readonly prepare: Effect.Effect<{ readonly pid: number }, UpgradeError>
  /** Kills the parked generation, if there is one. */
  readonly discard: Effect.Effect<void>
  /**
   * Whether a successful `upgrade` is the moment this generation hands over
   * (`spawning`), or the runner's later word is (`viaRunner`).
   */
  readonly handsOverOnSuccess: boolean
}

/**
 * How a next generation is started: `Spawn.spawn` in production; a test
 * passes one that returns a fake `Spawn.Child` whose Deferreds it completes,
 * so the lifecycle runs in-process without a real child.
 *
 * @internal
 */
export type Spawner = typeof Spawn.spawn

/** What `spawning` needs from the lifecycle. @internal */
export interface Spawning {
  readonly generation: number
  readonly cwd: string
  readonly registry: Registry
  readonly handoff: Handoff
  readonly command: () => Spawn.Command
  readonly timeout: Duration.Duration
  readonly probation: Duration.Duration
  readonly unregisteredListeners: "fail" | "warn" | undefined
  /** Completes when the lifecycle stops: every wait for a child ends then. */
  readonly stop: Deferred.Deferred<void>
  /** The layer's scope: watchers of children live and end there. */
  readonly scope: Scope.Scope
  /** Default: `Spawn.spawn`. */
  readonly spawner?: Spawner | undefined
}

/** A prepared next generation, parked, and the files it inherited when it started. */
interface Parked {
  readonly child: Spawn.Child
  readonly files: string
}

// What a prepared generation inherited at its start must still be what the registry holds.
const filesOf = (handover: Pick<Handover, "descriptors" | "fds">): string =>
  JSON.stringify([handover.descriptors.filter((d) => d.kind === "file"), handover.fds])

const ended = ({ code, signal }: Spawn.Exited) =>
  signal !== null ? `was killed by ${signal}` : `exited with code ${code}`

/** @internal */
export const spawning = (ctx: Spawning): Successor => {
  const self: Self = { ctx, spawn: ctx.spawner ?? Spawn.spawn, parked: undefined }
  return {
    // Strays and state first, outside the uninterruptible acquire: a user's snapshot may hang,
    // and the timeout, stop and interruption must still reach it.
    upgrade: (onSpawned) =>
      Effect.andThen(checkStrays(ctx), ctx.handoff.collect(ctx.timeout)).pipe(
        Effect.flatMap((stateText) => attempt(self, stateText, onSpawned))
      ),
    prepare: prepare(self),
    discard: discard(self),
    handsOverOnSuccess: true
  }
}

/** A spawning successor: its settings, and the one generation it may hold parked. */
interface Self {
  readonly ctx: Spawning
  readonly spawn: Spawner
  parked: Parked | undefined
}

const nextManifest = (
  ctx: Spawning,
  fds: ReadonlyArray<Protocol.Descriptor>,
  extra: { readonly state?: boolean; readonly prepared?: boolean }
): Protocol.Manifest => ({
  version: Protocol.VERSION,
  generation: ctx.generation + 1,
  parentPid: process.pid,
  cwd: ctx.cwd,
  fds,
  ...Protocol.upgradeTimeoutField(ctx.timeout),
  ...extra
})

const checkStrays = (ctx: Spawning) =>
  Effect.suspend((): Effect.Effect<void, SpawnError | UnregisteredListener> => {
    let addresses: ReadonlyArray<string>
    try {
      addresses = ctx.registry.strays()
    } catch (cause) {
      // Reading /proc fails this way when the process is out of fds; spawning would fail next.
      const { args, execPath } = ctx.command()
      return Effect.fail(new SpawnError({ command: [execPath, ...args].join(" "), cause }))
    }
    if (addresses.length === 0) return Effect.void
    const error = new UnregisteredListener({ addresses })
    return ctx.unregisteredListeners === "warn" ? Log.warning(error.message) : Effect.fail(error)
  })

// Until `ready` the child has a timeout; after it, a probation during which this generation
// keeps accepting, so a child that dies there takes nothing with it.
const attempt = (self: Self, stateText: string | undefined, onSpawned: (pid: number) => Effect.Effect<void>) =>
  Effect.acquireUseRelease(
    start(self, stateText, onSpawned),
    // The sockets are sent inside the race with the child's exit, the timeout and stop.
    ({ child, go }) =>
      Effect.as(
        Spawn.awaitReady(child, { timeout: self.ctx.timeout, probation: self.ctx.probation, stop: self.ctx.stop, go }),
        { pid: child.pid }
      ),
    ({ child }, exit) =>
      Effect.andThen(
        Exit.isSuccess(exit) ? Effect.andThen(child.detach, watchSuccessor(self.ctx, child)) : child.kill,
        Effect.sync(() => self.ctx.registry.settle(Exit.isSuccess(exit)))
      )
  )

/** Spawns the next generation, or takes the parked one, which then needs `go`. */
const start = (self: Self, stateText: string | undefined, onSpawned: (pid: number) => Effect.Effect<void>) =>
  Effect.gen(function*() {
    const { ctx } = self
    const handover = { ...(yield* ctx.registry.handover()), state: stateText }
    const manifest = nextManifest(ctx, handover.descriptors, stateText === undefined ? {} : { state: true })
    const prepared = yield* takeParked(self, handover)
    // A resource of the layer's scope: closing it kills a child not yet handed over.
    const child = prepared ?? (yield* self.spawn(ctx.command(), manifest, handover).pipe(
      Fx.inScope(ctx.scope),
      Effect.tapError(() => Effect.sync(() => ctx.registry.settle(false)))
    ))
    yield* onSpawned(child.pid)
    yield* Log.info(
      `${prepared === undefined ? "started" : "handing over to the prepared"} generation ${
        ctx.generation + 1
      } (pid ${child.pid}) with ${handover.descriptors.length} descriptors`
    )
    return { child, go: prepared === undefined ? undefined : { manifest, handover } }
  })

/** Takes the parked generation for this upgrade if it can serve it; otherwise lets it go. */
const takeParked = (self: Self, handover: Handover) =>
  Effect.gen(function*() {
    const candidate = self.parked
    self.parked = undefined
    if (candidate === undefined || (yield* Deferred.isDone(candidate.child.exited))) return undefined
    if (filesOf(handover) === candidate.files) return candidate.child
    yield* Log.info(
      `the prepared generation (pid ${candidate.child.pid}) inherited other files than are registered now; ` +
        "starting the next generation afresh"
    )
    yield* candidate.child.kill
    return undefined
  })

// Without probation a child that dies after `ready` takes the listeners with it, since
// this generation has let them go; say so loudly while this one is still draining.
const watchSuccessor = (ctx: Spawning, child: Spawn.Child) =>
  Deferred.await(child.exited).pipe(
    Effect.flatMap((exited) =>
      Log.error(
        `the new generation (pid ${child.pid}) ${ended(exited)} after it was ready, while this generation ` +
          "drains; its listeners are gone with it. Set `probation` to keep them until the new generation " +
          "has proven itself"
      )
    ),
    // Forked from a release, which is uninterruptible: without this, closing the scope would wait for the child.
    Effect.interruptible,
    Effect.forkIn(ctx.scope)
  )

const prepare = (self: Self) =>
  Effect.gen(function*() {
    const { ctx } = self
    if (self.parked !== undefined) {
      yield* Log.info(`replacing the prepared generation (pid ${self.parked.child.pid})`)
      yield* discard(self)
    }
    // Refused now rather than at the upgrade; and the check is warm (the addon loaded) by then.
    yield* checkStrays(ctx)
    const files = yield* ctx.registry.registeredFiles()
    const child = yield* Effect.acquireUseRelease(
      Fx.inScope(ctx.scope)(
        self.spawn(ctx.command(), nextManifest(ctx, files.descriptors, { prepared: true }), { ...files, sockets: [] })
      ),
      (child) =>
        Log.info(`preparing generation ${ctx.generation + 1} (pid ${child.pid})`).pipe(
          Effect.andThen(Spawn.awaitParked(child, { timeout: ctx.timeout, stop: ctx.stop })),
          Effect.as(child)
        ),
      (child, exit) => Exit.isSuccess(exit) ? Effect.void : child.kill
    )
    self.parked = { child, files: filesOf(files) }
    yield* watchParked(self, child)
    yield* Log.info(
      `generation ${ctx.generation + 1} (pid ${child.pid}) is prepared; the next upgrade hands it the descriptors`
    )
    return { pid: child.pid }
  })

/** Kills the parked generation, if there is one, without a word from its watcher. */
const discard = (self: Self) =>
  Effect.suspend(() => {
    const candidate = self.parked
    self.parked = undefined
    return candidate === undefined ? Effect.void : candidate.child.kill
  })

// A parked generation that dies costs nothing: the next upgrade starts one afresh.
const watchParked = (self: Self, child: Spawn.Child) =>
  Deferred.await(child.exited).pipe(
    Effect.flatMap((exited) => {
      if (self.parked?.child !== child) return Effect.void
      self.parked = undefined
      return Log.warning(
        `the prepared generation (pid ${child.pid}) ${ended(exited)} while parked; the next upgrade starts one afresh`
      )
    }),
    Effect.forkIn(self.ctx.scope)
  )

/** The runner's answer to a request, as this generation's own outcome. */
const fromRunner = (request: Effect.Effect<Protocol.UpgradeResult | undefined>) =>
  Effect.flatMap(request, (result): Effect.Effect<{ readonly pid: number }, UpgradeError> =>
    result === undefined
      ? new SpawnError({ command: "the runner", cause: "the runner went away" })
      : result._tag === "Upgraded"
      ? Effect.succeed({ pid: result.pid })
      : Effect.fail(UpgradeErrors.revive(result.error)))

/**
 * Under a runner: the runner starts (and parks) every generation; its answer
 * ends the attempt, and its `exit` message is when this one steps down.
 *
 * @internal
 */
export const viaRunner = (link: Link): Successor => ({
  upgrade: () => fromRunner(link.requestUpgrade),
  prepare: fromRunner(link.requestPrepare),
  discard: Effect.void,
  handsOverOnSuccess: false
})
