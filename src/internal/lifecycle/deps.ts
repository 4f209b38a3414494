/**
 * One generation's lifecycle in one record: what its steps (`ready`,
 * `upgrade`, `prepare`, `stop`, in `lifecycle.ts`, `attempt.ts` and
 * `outcome.ts`) read and move. Built once by `lifecycle.ts`; the state lives
 * in `machine`, which only `state.ts` moves.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { UpgradeError } from "../../UpgradeError.js"
import type { ExitReason, Upgraded } from "../../Upgrader.js"
import type * as Announce from "../announce.js"
import * as Fx from "../fx.js"
import type * as Link from "../link.js"
import type { Registry } from "../registry.js"
import type * as LifecycleState from "./state.js"
import type * as Successor from "./successor.js"

/** @internal */
export interface Deps {
  readonly generation: number
  /** The channel to the previous generation (or the runner); `undefined` in a first generation. */
  readonly link: Link.Link | undefined
  /** Under a runner (`effect-tableflip run`). */
  readonly supervised: boolean
  /** Absolute; `undefined` when there is none, or under a runner (whose file it is). */
  readonly pidFile: string | undefined
  readonly machine: LifecycleState.Machine
  readonly registry: Registry
  readonly announce: Announce.Announcer
  readonly successor: Successor.Successor
  readonly exitReason: Deferred.Deferred<ExitReason>
  /** Completes when the lifecycle stops: every wait for a child ends then. */
  readonly stopSignal: Deferred.Deferred<void>
  /** The layer's scope: upgrade attempts and watchers live and end there. */
  readonly scope: Scope.Scope
  /**
   * `prepare` and the start of `upgrade` take turns: an upgrade asked for while a generation
   * is being prepared waits for it (bounded by the timeout) and then takes it over.
   */
  readonly gate: Fx.Semaphore
  /** The latest upgrade attempt, which `stop` waits for. */
  pending: Fx.RunningFiber<Upgraded, UpgradeError> | undefined
}

/**
 * Moves the machine by `event`, failing with the refusal if it is refused.
 *
 * @internal
 */
export const apply = (deps: Deps, event: LifecycleState.Event): Effect.Effect<LifecycleState.State, UpgradeError> =>
  Effect.suspend(() => Fx.matchResult(deps.machine.apply(event), { onFailure: Effect.fail, onSuccess: Effect.succeed }))

/**
 * The event `upgrade` and `prepare` begin with: refused while the previous generation lives.
 *
 * @internal
 */
export const begin = (deps: Deps): Effect.Effect<Extract<LifecycleState.Event, { readonly _tag: "Begin" }>> =>
  Effect.gen(function*() {
    const link = deps.link
    const parentAlive = link !== undefined && !(yield* Deferred.isDone(link.predecessorGone))
    return {
      _tag: "Begin" as const,
      pid: process.pid,
      parentPid: parentAlive ? link.manifest.predecessorPid ?? link.parentPid : undefined
    }
  })
