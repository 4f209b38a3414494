/**
 * One upgrade attempt, and one prepare: begin (the machine says whether it
 * may), start the next generation through the `Successor` (which waits for
 * its ready, exit, timeout or this generation's stop), and tell the outcome
 * (`outcome.ts`).
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import type { UpgradeError } from "../../UpgradeError.js"
import type { Prepared, Upgraded } from "../../Upgrader.js"
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
    // Success completes `exit`, and the app may close the layer's scope at once, interrupting
    // the attempt while it still settles, so that its fiber ends interrupted. The caller gets the
    // outcome the attempt came to instead. Effect 4 resumes a Deferred's waiters inside its
    // completion, so the app closes the scope before the attempt's finalizer ends; Effect 3
    // resumes them later, after this fiber has ended.
    let decided: Exit.Exit<Upgraded, UpgradeError> | undefined
    const fiber = yield* Effect.forkIn(attempt(deps, startedAt, (exit) => (decided = exit)), deps.scope)
    deps.pending = fiber
    const ended = yield* Fiber.await(fiber).pipe(Effect.onInterrupt(() => Fiber.interrupt(fiber)))
    return yield* decided ?? ended
  }).pipe(
    Outcome.metered,
    Effect.tapError((error) => Log.warning(`upgrade failed: ${error.message}`)),
    Effect.withLogSpan("upgrade"),
    Effect.withSpan("Upgrader.upgrade")
  )

const attempt = (deps: Deps, startedAt: number, decide: (exit: Exit.Exit<Upgraded, UpgradeError>) => void) =>
  deps.successor.upgrade((childPid) => Effect.ignore(apply(deps, { _tag: "Spawned", childPid }))).pipe(
    // One finalizer, so no interruption can land between deciding and settling.
    Effect.onExit((exit) => {
      decide(exit)
      // Recorded before `exit` completes: the app's shutdown may interrupt the caller right after.
      return Effect.andThen(Outcome.recordUpgrade(deps, startedAt, exit), Outcome.settle(deps, exit))
    })
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
