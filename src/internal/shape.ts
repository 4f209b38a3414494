/**
 * Shape checks written by hand, for what crosses between processes before
 * `ready` (the handover manifest, channel messages, the directory handover's
 * frames): `effect/Schema` would cost every generation more start-up time
 * than the rest of the library together (it pulls in fast-check). The checks
 * are Schema's (`test/protocol.test.ts` compares the two on generated input):
 * unknown properties are ignored, everything else must match exactly. Each
 * throws a `Mismatch` naming the path; `check` turns that into a message.
 *
 * @internal
 */
import * as Fx from "./fx.js"

/** @internal */
export class Mismatch {
  constructor(readonly path: string, readonly expected: string, readonly actual: unknown) {}
  get message(): string {
    const actual = this.actual === undefined ? "nothing" : JSON.stringify(this.actual)
    return `at ${this.path === "" ? "the top" : this.path}: expected ${this.expected}, got ${actual}`
  }
}

/** An object's fields. @internal */
export const object = (value: unknown, path: string): Readonly<Record<string, unknown>> => {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Mismatch(path, "an object", value)
  return value as Record<string, unknown>
}

/** An object's fields, as decoders built on these checks call it. @internal */
export const fields = object

/** @internal */
export const string = (value: unknown, path: string): string => {
  if (typeof value !== "string") throw new Mismatch(path, "a string", value)
  return value
}

/** @internal */
export const boolean = (value: unknown, path: string): boolean => {
  if (typeof value !== "boolean") throw new Mismatch(path, "a boolean", value)
  return value
}

/** An integer from `min` to `max`. @internal */
export const int = (value: unknown, path: string, min: number, max: number): number => {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new Mismatch(path, `an integer from ${min} to ${max}`, value)
  }
  return value
}

/** One of `literals`. @internal */
export const oneOf = <L extends string>(value: unknown, path: string, literals: ReadonlyArray<L>): L => {
  if (!(literals as ReadonlyArray<unknown>).includes(value)) {
    throw new Mismatch(path, `one of ${literals.map((l) => JSON.stringify(l)).join(", ")}`, value)
  }
  return value as L
}

/** An optional field: absent (or undefined) stays absent. @internal */
export const optional = <K extends string, A>(
  from: Readonly<Record<string, unknown>>,
  key: K,
  path: string,
  check: (value: unknown, path: string) => A
): { readonly [P in K]?: A } =>
  from[key] === undefined ? {} : ({ [key]: check(from[key], `${path}.${key}`) } as { [P in K]?: A })

/** @internal */
export const MAX_PID = 2 ** 31 - 1

/** A process id. @internal */
export const pid = (value: unknown, path: string): number => int(value, path, 1, MAX_PID)

/** Any safe integer. @internal */
export const integer = (value: unknown, path: string): number =>
  int(value, path, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER)

/** An array, each item checked with `item`. @internal */
export const list = <A>(value: unknown, path: string, item: (value: unknown, path: string) => A): Array<A> => {
  if (!Array.isArray(value)) throw new Mismatch(path, "an array", value)
  return value.map((each: unknown, i) => item(each, `${path}[${i}]`))
}

/**
 * Checks `value` with `check`; a mismatch comes back as its message, naming
 * the path (`at fds[0].port: expected an integer from 0 to 65535, got "x"`).
 *
 * @internal
 */
export const check = <A>(value: unknown, check: (value: unknown) => A): Fx.Result<A, string> => {
  try {
    return Fx.succeed(check(value))
  } catch (error) {
    if (error instanceof Mismatch) return Fx.fail(error.message)
    throw error
  }
}
