/**
 * Typed state handed from one generation to the next: a cache snapshot,
 * counters, a key ring. Described by an `effect/Schema`, so the new
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
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { StateError } from "./UpgradeError.js"
import { Upgrader } from "./Upgrader.js"

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

/** Every key's encoded value, as the previous generation sent them; anything else is a typed Decode error. */
const parseAll = (key: string, text: string): Effect.Effect<Record<string, unknown>, StateError> =>
  Effect.suspend(() => {
    let all: unknown
    try {
      all = JSON.parse(text)
    } catch (error) {
      return Effect.fail(
        new StateError({
          key,
          reason: "Decode",
          detail: `the handed-over state is not JSON: ${(error as Error).message}`
        })
      )
    }
    return typeof all === "object" && all !== null && !Array.isArray(all)
      ? Effect.succeed(all as Record<string, unknown>)
      : Effect.fail(
        new StateError({
          key,
          reason: "Decode",
          detail: `the handed-over state is ${all === null ? "null" : typeof all}, not an object of keys`
        })
      )
  })

/**
 * Where `value` would not come back from `JSON.parse(JSON.stringify(value))`
 * as it is, or `undefined` if it would: `NaN` and the infinities become
 * `null`, a `Date` a string, a `Map` or a class instance `{}`, `undefined` in
 * an array `null`. (An `undefined` property is dropped, as an optional field
 * would be, so it passes.)
 */
const notJson = (value: unknown, path: string): string | undefined => {
  const at = path === "" ? "" : ` at ${path}`
  switch (typeof value) {
    case "string":
    case "boolean":
      return undefined
    case "number":
      return Number.isFinite(value) ? undefined : `${value}${at} would arrive as null`
    case "object": {
      if (value === null) return undefined
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          const item: unknown = value[i]
          if (item === undefined) return `undefined at ${path}[${i}] would arrive as null`
          const problem = notJson(item, `${path}[${i}]`)
          if (problem !== undefined) return problem
        }
        return undefined
      }
      const proto = Object.getPrototypeOf(value)
      if (proto !== Object.prototype && proto !== null) {
        return `a ${proto?.constructor?.name ?? "non-plain object"}${at} would arrive as ${
          JSON.stringify(value)?.slice(0, 40)
        }`
      }
      for (const [name, item] of Object.entries(value)) {
        if (item === undefined) continue
        const problem = notJson(item, `${path}.${name}`)
        if (problem !== undefined) return problem
      }
      return undefined
    }
    default:
      return `a ${typeof value}${at} has no JSON form`
  }
}

/**
 * Describes a piece of state handed between generations under `key`.
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
export const make = <A, I>(key: string, schema: Schema.Schema<A, I>): State<A> => {
  const decode = Schema.decodeUnknown(schema)
  const encode = Schema.encode(schema)
  return {
    key,
    inherited: Effect.gen(function*() {
      const { inheritedState } = yield* Upgrader
      if (inheritedState === undefined) return Option.none()
      const all = yield* parseAll(key, inheritedState)
      if (!Object.hasOwn(all, key)) return Option.none()
      return Option.some(
        yield* decode(all[key]).pipe(
          Effect.mapError((error) =>
            new StateError({
              key,
              reason: "Decode",
              detail: `what the previous generation handed over does not match this schema: ${
                ParseResult.TreeFormatter.formatErrorSync(error)
              }`
            })
          )
        )
      )
    }),
    offer: <E, R>(snapshot: Effect.Effect<A, E, R>) =>
      Effect.gen(function*() {
        const upgrader = yield* Upgrader
        const context = yield* Effect.context<R>()
        yield* upgrader.offerState(
          key,
          snapshot.pipe(
            Effect.flatMap(encode),
            Effect.flatMap((encoded) => {
              const problem = notJson(encoded, "")
              return problem === undefined ? Effect.succeed(encoded) : Effect.fail(
                new StateError({
                  key,
                  reason: "Encode",
                  detail: `the encoded snapshot does not survive JSON: ${problem}; ` +
                    "encode it with a schema whose encoded side is JSON (numbers finite, dates as strings)"
                })
              )
            }),
            Effect.catchAllCause((cause) =>
              Cause.isFailType(cause) && cause.error instanceof StateError ? Effect.fail(cause.error) : new StateError({
                key,
                reason: "Encode",
                detail: `the snapshot failed: ${Cause.pretty(cause).split("\n")[0]}`
              })
            ),
            Effect.provide(context)
          )
        )
      })
  }
}
