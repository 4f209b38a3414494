/**
 * The hand-written manifest check against the `effect/Schema` definition it
 * replaced (kept here, where loading Schema costs a generation nothing):
 * they must accept and reject the same documents and decode them alike.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Arbitrary from "effect/Arbitrary"
import * as FastCheck from "effect/FastCheck"
import * as Schema from "effect/Schema"
import * as Fx from "../src/internal/fx.js"
import * as Protocol from "../src/internal/protocol.js"

const Fd = Schema.Int.pipe(Schema.between(Protocol.FIRST_FD, Protocol.LAST_FD))
const Port = Schema.Int.pipe(Schema.between(0, 65535))
const Pid = Schema.Int.pipe(Schema.between(1, 2 ** 31 - 1))
const Descriptor = Schema.Union(
  Schema.Struct({
    kind: Schema.Literal("tcp"),
    key: Schema.String,
    address: Schema.String,
    port: Port,
    family: Schema.Literal("IPv4", "IPv6")
  }),
  Schema.Struct({
    kind: Schema.Literal("unix"),
    key: Schema.String,
    path: Schema.String,
    inode: Schema.optional(Schema.String)
  }),
  Schema.Struct({
    kind: Schema.Literal("udp"),
    key: Schema.String,
    type: Schema.Literal("udp4", "udp6"),
    address: Schema.String,
    port: Port
  }),
  Schema.Struct({ kind: Schema.Literal("conn"), key: Schema.String }),
  Schema.Struct({ kind: Schema.Literal("file"), key: Schema.String, fd: Fd })
)
const Manifest = Schema.Struct({
  version: Schema.Literal(Protocol.VERSION),
  generation: Schema.Int.pipe(Schema.between(1, Number.MAX_SAFE_INTEGER)),
  parentPid: Pid,
  cwd: Schema.String,
  fds: Schema.Array(Descriptor),
  supervisor: Schema.optional(Schema.Boolean),
  state: Schema.optional(Schema.Boolean),
  predecessorPid: Schema.optional(Pid),
  upgradeTimeoutMillis: Schema.optional(Schema.Number.pipe(Schema.finite(), Schema.nonNegative()))
})
const bySchema = Schema.decodeUnknownEither(Manifest, { onExcessProperty: "ignore" })

/** A value somewhere in a valid manifest replaced by an arbitrary JSON value. */
const mutate = (value: unknown, path: ReadonlyArray<number>, replacement: unknown): unknown => {
  if (path.length === 0 || typeof value !== "object" || value === null) return replacement
  const entries = Object.entries(value)
  if (entries.length === 0) return replacement
  const [key, inner] = entries[path[0]! % entries.length]!
  const copy: Record<string, unknown> = Array.isArray(value) ? [...value] as never : { ...value }
  copy[key] = mutate(inner, path.slice(1), replacement)
  return copy
}

const json = FastCheck.oneof(
  FastCheck.constant(undefined),
  FastCheck.constant(null),
  FastCheck.boolean(),
  FastCheck.integer({ min: -5, max: 70_000 }),
  FastCheck.double(),
  FastCheck.string(),
  FastCheck.constantFrom("tcp", "unix", "udp", "conn", "file", "IPv4", "udp6"),
  FastCheck.array(FastCheck.integer(), { maxLength: 2 }),
  FastCheck.dictionary(FastCheck.string(), FastCheck.integer(), { maxKeys: 2 })
)

describe("the handover manifest, checked by hand", () => {
  it("accepts and rejects what the Schema it replaced does, and decodes alike", () => {
    const valid = Arbitrary.make(Manifest)
    const cases = FastCheck.tuple(valid, FastCheck.array(FastCheck.nat(), { maxLength: 4 }), json, FastCheck.boolean())
    let rejected = 0
    FastCheck.assert(
      FastCheck.property(cases, ([manifest, path, replacement, intact]) => {
        // As the new generation sees it: through JSON.
        const input: unknown = JSON.parse(
          JSON.stringify(intact ? manifest : mutate(manifest, path, replacement)) ?? "null"
        )
        const expected = bySchema(input)
        const actual = Protocol.check(input, Protocol.manifestOf)
        assert.strictEqual(Fx.isSuccess(actual), Fx.isSuccess(expected), JSON.stringify(input))
        if (Fx.isSuccess(expected) && Fx.isSuccess(actual)) {
          assert.deepStrictEqual(Fx.successOf(actual), Fx.successOf(expected))
        } else rejected++
      }),
      { numRuns: 1500, seed: 20261201 }
    )
    assert.isAbove(rejected, 500, "the generated cases include broken manifests")
  })

  it("names the path and what it expected", () => {
    const broken = { version: 1, generation: 2, parentPid: 10, cwd: "/", fds: [{ kind: "tcp", key: "a", port: "x" }] }
    const decoded = Protocol.decode(JSON.stringify(broken))
    assert.isTrue(Fx.isFailure(decoded))
    if (Fx.isFailure(decoded)) {
      assert.strictEqual(
        Fx.failureOf(decoded).message.split(": ").slice(-2).join(": "),
        "at fds[0].address: expected a string, got nothing"
      )
    }
  })
})
