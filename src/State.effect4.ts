/**
 * Typed state handed from one generation to the next: a cache snapshot,
 * counters, a key ring. Described by an `effect/Schema` codec, so the new
 * generation reads it decoded and typed, or gets a `StateError` when it does
 * not decode (the schema changed between versions, say).
 *
 * ```ts
 * const Counters = State.make("counters", Schema.Struct({ requests: Schema.Number }))
 *
 * const program = Effect.gen(function*() {
 *   const inherited = yield* Counters.inherited // Option<{ requests: number }>
 *   const requests = yield* Ref.make(Option.match(inherited, { onNone: () => 0, onSome: (c) => c.requests }))
 *   yield* Counters.offer(Effect.map(Ref.get(requests), (n) => ({ requests: n })))
 *   ...
 * })
 * ```
 *
 * The snapshot is taken when an upgrade starts, encoded with the schema, and
 * sent over the handover channel after the sockets (so the new generation
 * has it before its layers are built); what changes after that stays with the
 * old generation. The whole state is limited to `maxStateBytes` of JSON
 * (default 64 MiB); more fails the upgrade with `StateError` ("TooLarge")
 * before anything is started. Under `effect-tableflip run`, state is not
 * carried (the runner keeps sockets only).
 *
 * @since 0.2.0
 */
import * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Handover from "./internal/state/handover.js"
import type { StateError } from "./UpgradeError.js"
import type { Upgrader } from "./Upgrader.js"

/**
 * One piece of state, by key.
 *
 * @since 0.2.0
 * @category models
 */
export interface State<A> {
  readonly key: string
  /**
   * What the previous generation handed over under this key: `None` in a
   * first generation, or when the previous one offered nothing under it;
   * `StateError` ("Decode") when it does not match the schema.
   */
  readonly inherited: Effect.Effect<Option.Option<A>, StateError, Upgrader>
  /** Offers, for the scope, a snapshot the next generation receives when an upgrade starts. */
  readonly offer: <E, R>(
    snapshot: Effect.Effect<A, E, R>
  ) => Effect.Effect<void, never, Upgrader | Scope.Scope | R>
}

/**
 * Describes a piece of state handed between generations under `key`, with
 * a codec whose decoding and encoding need no services.
 *
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import * as Option from "effect/Option"
 * import * as Ref from "effect/Ref"
 * import * as Schema from "effect/Schema"
 * import { State } from "effect-tableflip"
 *
 * const Counters = State.make("counters", Schema.Struct({ requests: Schema.Number }))
 *
 * // Before `ready`: start from what the previous generation counted, and offer the count to the next.
 * export const requests = Effect.gen(function*() {
 *   const inherited = yield* Counters.inherited
 *   const count = yield* Ref.make(Option.match(inherited, { onNone: () => 0, onSome: (c) => c.requests }))
 *   yield* Counters.offer(Effect.map(Ref.get(count), (requests) => ({ requests })))
 *   return count
 * })
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const make = <A, I>(key: string, schema: Schema.Codec<A, I>): State<A> => {
  const decode = Schema.decodeUnknownEffect(schema)
  return Handover.make(key, {
    decode: (input) => Effect.mapError(decode(input), (error) => error.message),
    encode: Schema.encodeEffect(schema)
  })
}
