/**
 * A stand-in `Upgrader` for users' own tests, and for platforms without fd
 * inheritance (Windows), where `Upgrader.layer` fails with `NotSupported`.
 *
 * Listeners bind fresh (through the same registry, so unix socket paths are
 * handled the same way), `ready` does nothing, `upgrade` fails with
 * `NotSupported` unless told otherwise, and a test can complete `exit` to
 * drive the application's drain path.
 *
 * ```ts
 * it.scoped("drains on exit", () =>
 *   Effect.gen(function*() {
 *     const fiber = yield* Effect.fork(myApp)
 *     yield* UpgraderTest.triggerExit("upgraded")
 *     yield* Fiber.join(fiber)
 *   }).pipe(Effect.provide(UpgraderTest.layer())))
 * ```
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import * as Fds from "./Fds.js"
import * as Fx from "./internal/fx.js"
import { Registry } from "./internal/registry.js"
import * as Services from "./internal/services.js"
import type { StateError, UpgradeError } from "./UpgradeError.js"
import { NotSupported } from "./UpgradeError.js"
import type { ExitReason, Prepared, Upgraded } from "./Upgrader.js"
import { Upgrader } from "./Upgrader.js"

/**
 * Controls for the stub, for the test that uses it.
 *
 * @since 0.1.0
 * @category tags
 */
export class UpgraderTest extends Fx.Tag<UpgraderTest, {
  /** Completes the stub's `exit`, as a successful upgrade or a stop would. */
  readonly triggerExit: (reason: ExitReason) => Effect.Effect<void>
  /** How many times the application called `ready`. */
  readonly readyCount: Effect.Effect<number>
  /** How many times the application called `upgrade`. */
  readonly upgradeCount: Effect.Effect<number>
  /** How many times the application called `prepare`. */
  readonly prepareCount: Effect.Effect<number>
  /** Takes the snapshots the application offers (`State.offer`), encoded, as an upgrade would. */
  readonly offeredState: Effect.Effect<Readonly<Record<string, unknown>>, StateError>
  /** The reason the application gave `readyWhen`'s failed check, if any. */
  readonly unreadyReason: Effect.Effect<string | undefined>
}>()("effect-tableflip/UpgraderTest") {}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** What `upgrade` does. Default: fail with `NotSupported`. */
  readonly upgrade?: Effect.Effect<Upgraded, UpgradeError> | undefined
  /** What `prepare` does. Default: fail with `NotSupported`. */
  readonly prepare?: Effect.Effect<Prepared, UpgradeError> | undefined
  /** What `hasParent` reports. Default: false. */
  readonly hasParent?: boolean | undefined
  /** State "handed over" by a previous generation: encoded values by key, as `State` would send them. */
  readonly inheritedState?: Readonly<Record<string, unknown>> | undefined
}

/**
 * Builds the stub.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = Effect.fnUntraced(function*(options: Options = {}) {
  const exitReason = yield* Deferred.make<ExitReason>()
  const readyCount = yield* Ref.make(0)
  const upgradeCount = yield* Ref.make(0)
  const prepareCount = yield* Ref.make(0)
  const registry = new Registry([], { mayUnlink: () => true })
  const offered = new Map<string, Effect.Effect<unknown, StateError>>()
  const unreadyReason = yield* Ref.make<string | undefined>(undefined)
  const upgrade = options.upgrade ??
    Effect.fail(new NotSupported({ platform: process.platform, reason: "UpgraderTest does not upgrade" }))
  const prepare = options.prepare ??
    Effect.fail(new NotSupported({ platform: process.platform, reason: "UpgraderTest does not prepare" }))
  const triggerExit = (reason: ExitReason) => Effect.asVoid(Deferred.succeed(exitReason, reason))
  return {
    upgrader: Upgrader.of({
      pid: process.pid,
      generation: 1,
      hasParent: options.hasParent ?? false,
      ready: Ref.update(readyCount, (n) => n + 1),
      upgrade: Effect.andThen(Ref.update(upgradeCount, (n) => n + 1), upgrade),
      prepare: Effect.andThen(Ref.update(prepareCount, (n) => n + 1), prepare),
      exit: Deferred.await(exitReason),
      stop: triggerExit("stopped"),
      waitForParent: Effect.void,
      offerState: (key, snapshot) =>
        Effect.acquireRelease(
          Effect.sync(() => offered.set(key, snapshot)),
          () => Effect.sync(() => offered.delete(key))
        ),
      inheritedState: options.inheritedState === undefined ? undefined : JSON.stringify(options.inheritedState),
      unready: (reason) => Ref.set(unreadyReason, reason)
    }),
    fds: Fds.fromRegistry(registry),
    test: UpgraderTest.of({
      triggerExit,
      readyCount: Ref.get(readyCount),
      upgradeCount: Ref.get(upgradeCount),
      prepareCount: Ref.get(prepareCount),
      // Suspended: the snapshots offered by the time it runs, not by the time the stub was built.
      offeredState: Effect.suspend(() =>
        Effect.map(
          Effect.forEach([...offered], ([key, snapshot]) => Effect.map(snapshot, (value) => [key, value] as const)),
          (entries) => Object.fromEntries(entries)
        )
      ),
      unreadyReason: Ref.get(unreadyReason)
    })
  }
})

/**
 * The stub as a layer: `Upgrader`, `Fds`, and the `UpgraderTest` controls.
 *
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import * as Fiber from "effect/Fiber"
 * import { Upgrader, UpgraderTest } from "effect-tableflip"
 *
 * const app = Effect.gen(function*() {
 *   const upgrader = yield* Upgrader.Upgrader
 *   yield* upgrader.ready
 *   return yield* upgrader.exit
 * })
 *
 * // The body of a test: `it.live("drains when a new generation takes over", () => drains)` in @effect/vitest.
 * export const drains = Effect.gen(function*() {
 *   const fiber = yield* Effect.fork(app)
 *   yield* UpgraderTest.triggerExit("upgraded")
 *   assert.strictEqual(yield* Fiber.join(fiber), "upgraded")
 * }).pipe(Effect.provide(UpgraderTest.layer()))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<Upgrader | Fds.Fds | UpgraderTest> =>
  Layer.effectContext(
    Effect.map(make(options), ({ fds, test, upgrader }) =>
      Context.add(Services.context(upgrader, fds), UpgraderTest, test))
  )

/**
 * Completes the stub's `exit`.
 *
 * @since 0.1.0
 * @category accessors
 */
export const triggerExit = (reason: ExitReason): Effect.Effect<void, never, UpgraderTest> =>
  Effect.flatMap(UpgraderTest, (test) => test.triggerExit(reason))
