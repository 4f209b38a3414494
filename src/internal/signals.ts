/**
 * Upgrades (and prepares) on signals, for `Upgrader.layerSignal`.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { UpgradeError } from "../UpgradeError.js"
import type { Upgrader } from "../Upgrader.js"
import * as Fx from "./fx.js"
import * as Log from "./log.js"

/** Installs the handlers for the scope: `signal` upgrades, `prepare` (if any) prepares. @internal */
export const install = (
  upgrader: Fx.ShapeOf<Upgrader>,
  signal: NodeJS.Signals,
  prepare: NodeJS.Signals | undefined
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function*() {
    yield* onSignal(
      signal,
      // A signal to a new generation whose predecessor still drains (a second deploy hook, say)
      // is an upgrade after that drain, not a ParentNotExited the operator has to retry.
      Effect.andThen(upgrader.waitForParent, Effect.map(upgrader.upgrade, ({ pid }) => `upgraded to pid ${pid}`))
    )
    if (prepare !== undefined) {
      yield* onSignal(
        prepare,
        Effect.andThen(upgrader.waitForParent, Effect.map(upgrader.prepare, ({ pid }) => `prepared pid ${pid}`))
      )
    }
  })

/** Runs `action` once per signal, folding the ones that arrive while it runs into one more run. */
const onSignal = (signal: NodeJS.Signals, action: Effect.Effect<string, UpgradeError>) =>
  Effect.gen(function*() {
    // One pending request at most (a Deferred completed once by any number of signals): what
    // arrives during a run is one more run after it. Not a Queue, whose modules every
    // generation would load before `ready` for this alone.
    let requested = Fx.makeDeferredUnsafe<void>()
    const handler = () => {
      Fx.doneUnsafe(requested, Effect.void)
    }
    yield* Effect.acquireRelease(
      Effect.sync(() => process.on(signal, handler)),
      () =>
        Effect.sync(() => {
          ignore(signal)
          process.off(signal, handler)
        })
    )
    const next = Effect.suspend(() => Deferred.await(requested)).pipe(
      Effect.andThen(Effect.sync(() => {
        requested = Fx.makeDeferredUnsafe<void>()
      }))
    )
    yield* next.pipe(
      Effect.andThen(
        action.pipe(
          Effect.matchCauseEffect({
            // The lifecycle logs its own failures; a defect must not end the loop, or later signals do nothing.
            onFailure: (cause) => Fx.isFailType(cause) ? Effect.void : Log.error(`${signal} died`, cause),
            onSuccess: (done) => Log.info(`${signal}: ${done}`)
          })
        )
      ),
      Effect.forever,
      Effect.forkScoped
    )
  })

// Once released, a signal stays ignored: a late SIGHUP must never kill a generation that is draining.
const ignored = new Set<NodeJS.Signals>()
const ignore = (signal: NodeJS.Signals): void => {
  if (ignored.has(signal)) return
  ignored.add(signal)
  process.on(signal, () => {})
}
