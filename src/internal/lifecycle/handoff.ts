/**
 * State handoff, the old generation's side: the snapshots the app offers
 * (`State.offer`), taken and encoded once when an upgrade starts.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { StateError } from "../../UpgradeError.js"
import * as Fx from "../fx.js"

/** @internal */
export const DEFAULT_MAX_STATE_BYTES = 64 * 1024 * 1024

/** @internal */
export interface Handoff {
  /** Registers `snapshot` under `key` for the scope. */
  readonly offer: (key: string, snapshot: Effect.Effect<unknown, StateError>) => Effect.Effect<void, never, Scope.Scope>
  /**
   * Every snapshot, as JSON text, or `undefined` when nothing is offered.
   * What changes after it stays with the old generation.
   */
  readonly collect: (timeout: Duration.Duration) => Effect.Effect<string | undefined, StateError>
}

/** @internal */
export const make = (maxStateBytes: number = DEFAULT_MAX_STATE_BYTES): Handoff => {
  const providers = new Map<string, Effect.Effect<unknown, StateError>>()
  const keys = () => [...providers.keys()].join(", ")

  const encode = Effect.gen(function*() {
    if (providers.size === 0) return undefined
    const values: Record<string, unknown> = {}
    for (const [key, snapshot] of providers) values[key] = yield* snapshot
    const text = yield* Effect.try({
      try: () => JSON.stringify(values),
      catch: (error) =>
        new StateError({
          key: keys(),
          reason: "Encode",
          detail: `the encoded state is not JSON: ${(error as Error).message}`
        })
    })
    const bytes = Buffer.byteLength(text)
    if (bytes > maxStateBytes) {
      return yield* new StateError({
        key: keys(),
        reason: "TooLarge",
        detail: `${bytes} bytes encoded, over the limit of ${maxStateBytes} (option maxStateBytes)`
      })
    }
    return text
  })

  return {
    offer: (key, snapshot) =>
      Effect.acquireRelease(
        Effect.sync(() => providers.set(key, snapshot)),
        () => Effect.sync(() => providers.delete(key))
      ),
    // A user's snapshot may hang: the timeout, stop and interruption must still reach it.
    collect: (timeout) =>
      encode.pipe(Fx.timeoutFail({
        duration: timeout,
        onTimeout: () =>
          new StateError({
            key: keys(),
            reason: "Encode",
            detail: `the snapshot did not complete within ${Duration.format(timeout)}`
          })
      }))
  }
}
