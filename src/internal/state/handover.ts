/**
 * `State` without the schema: the handed-over JSON, parsed and checked, and snapshots that
 * must survive JSON. Written once for Effect 3 and 4; `State.ts` and `State.effect4.ts` only
 * adapt the user's schema (Effect 3 `Schema.decodeUnknown`, Effect 4 `Schema.decodeUnknownEffect`).
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import { StateError } from "../../UpgradeError.js"
import { Upgrader } from "../../Upgrader.js"
import * as Fx from "../fx.js"

/** The user's schema, as the major's Schema module runs it. @internal */
export interface Codec<A> {
  /** Fails with why the input does not match, formatted for a person. */
  readonly decode: (input: unknown) => Effect.Effect<A, string>
  readonly encode: (value: A) => Effect.Effect<unknown, unknown>
}

/** A piece of state under `key`, decoded and encoded by `codec`: a `State.State<A>`. @internal */
export const make = <A>(key: string, codec: Codec<A>) => ({
  key,
  inherited: Effect.gen(function*() {
    const { inheritedState } = yield* Upgrader
    if (inheritedState === undefined) return Option.none()
    const all = yield* parseAll(key, inheritedState)
    if (!Object.hasOwn(all, key)) return Option.none()
    return Option.some(
      yield* codec.decode(all[key]).pipe(
        Effect.mapError((issue) =>
          new StateError({
            key,
            reason: "Decode",
            detail: `what the previous generation handed over does not match this schema: ${issue}`
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
          Effect.flatMap(codec.encode),
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
          // Every way the snapshot can end (its own error, a defect, interruption) is a typed error.
          Effect.exit,
          Effect.flatMap((exit) =>
            Exit.isSuccess(exit) ? Effect.succeed(exit.value) : Effect.fail(encodeError(key, exit.cause))
          ),
          Effect.provide(context)
        )
      )
    })
})

const encodeError = (key: string, cause: Cause.Cause<unknown>): StateError => {
  const failure = Option.getOrUndefined(Fx.singleFailure(cause))
  return failure instanceof StateError ? failure : new StateError({
    key,
    reason: "Encode",
    detail: `the snapshot failed: ${Cause.pretty(cause).split("\n")[0]}`
  })
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
