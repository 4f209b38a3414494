/**
 * One live `Upgrader` per process, as tableflip allows one `Upgrader`.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { DuplicateUpgrader } from "../UpgradeError.js"

/** Held on `globalThis` under a registered symbol, so that two copies of this package in one process share it. */
const SLOT = Symbol.for("effect-tableflip/live-upgrader")

interface Claim {
  readonly constructor: string
}

const slots = globalThis as { [SLOT]?: Claim }

/**
 * Claims the process's one lifecycle for the scope, or fails with
 * `DuplicateUpgrader` while another holds it.
 *
 * @internal
 */
export const claim = (constructor: string): Effect.Effect<void, DuplicateUpgrader, Scope.Scope> =>
  Effect.asVoid(Effect.acquireRelease(
    Effect.suspend(() => {
      const live = slots[SLOT]
      if (live !== undefined) {
        return Effect.fail(new DuplicateUpgrader({ pid: process.pid, live: live.constructor, refused: constructor }))
      }
      const claimed: Claim = { constructor }
      slots[SLOT] = claimed
      return Effect.succeed(claimed)
    }),
    (claimed) =>
      Effect.sync(() => {
        if (slots[SLOT] === claimed) delete slots[SLOT]
      })
  ))
