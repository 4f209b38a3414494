/**
 * One upgrade attempt, and one prepare: begin (the machine says whether it
 * may), start the next generation through the `Successor` (which waits for
 * its ready, exit, timeout or this generation's stop), and tell the outcome
 * (`outcome.ts`).
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import type { UpgradeError } from "../../UpgradeError.js"
import type { Prepared, Upgraded } from "../../Upgrader.js"
import * as Fx from "../fx.js"
import * as Log from "../log.js"
import { apply, begin, type Deps } from "./deps.js"
import * as Outcome from "./outcome.js"
import * as LifecycleState from "./state.js"

/**
 * `Upgrader.upgrade`: begins, then runs the attempt in the layer's scope, so
 * closing the layer kills a pending child; interrupting the caller
 * interrupts the attempt too.
 *
 * @internal
 */
export const upgrade = (deps: Deps, startedAt: number): Effect.Effect<Upgraded, UpgradeError> =>
  Effect.gen(function*() {
    yield* deps.gate.withPermits(1)(Effect.flatMap(begin(deps), (event) => apply(deps, event))).pipe(
      Effect.tapError((error) => Outcome.recordUpgrade(deps, startedAt, Exit.fail(error)))
    )
    yield* deps.announce.reloading(deps.generation + 1)
    // The caller is told the outcome inside `settle`, before `exit` completes: the app may then
    // close the layer's scope at once, interrupting the attempt while it settles and the caller
    // (`layerSignal`'s fiber lives in that scope) before either ended. Effect 4 resumes a
    // Deferred's waiters inside its completion, so there the app gets that far first; Effect 3
    // resumes them later.
    const outcome = Fx.makeDeferredUnsafe<Upgraded, UpgradeError>()
    const fiber = yield* Effect.forkIn(attempt(deps, startedAt, outcome), deps.scope)
    deps.pending = fiber
    // Joined as well for an attempt that never ran (forked into a closed scope).
    return yield* Effect.raceFirst(Deferred.await(outcome), Fiber.join(fiber)).pipe(
      Effect.onInterrupt(() => Fiber.interrupt(fiber))
    )
  }).pipe(
    Outcome.metered,
    Effect.tapError((error) => Log.warning(`upgrade failed: ${error.message}`)),
    Effect.withLogSpan("upgrade"),
    Effect.withSpan("Upgrader.upgrade")
  )

const attempt = (deps: Deps, startedAt: number, outcome: Deferred.Deferred<Upgraded, UpgradeError>) =>
  deps.successor.upgrade((childPid) => Effect.ignore(apply(deps, { _tag: "Spawned", childPid }))).pipe(
    // Recorded before `exit` completes: the app's shutdown may interrupt the caller right after.
    Effect.onExit((exit) =>
      Effect.andThen(
        Outcome.recordUpgrade(deps, startedAt, exit),
        Outcome.settle(deps, exit, Effect.sync(() => Fx.doneUnsafe(outcome, exit)))
      )
    )
  )

/**
 * `Upgrader.prepare`: checked against the machine, not applied, since a
 * prepared generation leaves this one Ready.
 *
 * @internal
 */
export const prepare = (deps: Deps, startedAt: number): Effect.Effect<Prepared, UpgradeError> =>
  Effect.gen(function*() {
    const refused = LifecycleState.refusal(deps.machine.get(), yield* begin(deps))
    if (refused !== undefined) return yield* refused
    return yield* deps.successor.prepare
  }).pipe(
    deps.gate.withPermits(1),
    Effect.onExit((exit) => Outcome.recordPrepare(deps, startedAt, exit)),
    Effect.tapError((error) => Log.warning(`prepare failed: ${error.message}`)),
    Effect.withLogSpan("prepare"),
    Effect.withSpan("Upgrader.prepare")
  )
