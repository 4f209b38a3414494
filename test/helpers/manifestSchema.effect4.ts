/**
 * The Effect 4 version of `manifestSchema.ts` (same exports; see there): the same Schema in
 * Effect 4's API, and the cases drawn from Effect 4's own `Arbitrary` (there is no FastCheck).
 */
import * as Arbitrary from "effect/Arbitrary"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type * as Fx from "../../src/internal/fx.js"
import * as Protocol from "../../src/internal/protocol.js"

const between = (minimum: number, maximum: number) => Schema.Int.check(Schema.isBetween({ minimum, maximum }))
const Fd = between(Protocol.FIRST_FD, Protocol.LAST_FD)
const Port = between(0, 65535)
const Pid = between(1, 2 ** 31 - 1)
const Descriptor = Schema.Union([
  Schema.Struct({
    kind: Schema.Literal("tcp"),
    key: Schema.String,
    address: Schema.String,
    port: Port,
    family: Schema.Literals(["IPv4", "IPv6"])
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
    type: Schema.Literals(["udp4", "udp6"]),
    address: Schema.String,
    port: Port
  }),
  Schema.Struct({ kind: Schema.Literal("conn"), key: Schema.String }),
  Schema.Struct({ kind: Schema.Literal("file"), key: Schema.String, fd: Fd })
])
const Manifest = Schema.Struct({
  version: Schema.Literal(Protocol.VERSION),
  generation: between(1, Number.MAX_SAFE_INTEGER),
  parentPid: Pid,
  cwd: Schema.String,
  fds: Schema.Array(Descriptor),
  supervisor: Schema.optional(Schema.Boolean),
  state: Schema.optional(Schema.Boolean),
  predecessorPid: Schema.optional(Pid),
  upgradeTimeoutMillis: Schema.optional(Schema.Number.check(Schema.isFinite(), Schema.isGreaterThanOrEqualTo(0)))
})

export const bySchema: (input: unknown) => Fx.Result<unknown, unknown> = Schema.decodeUnknownResult(Manifest, {
  onExcessProperty: "ignore"
})

export type Case = readonly [manifest: unknown, path: ReadonlyArray<number>, replacement: unknown, intact: boolean]

const json = Schema.Union([
  Schema.Undefined,
  Schema.Null,
  Schema.Boolean,
  between(-5, 70_000),
  Schema.Number,
  Schema.String,
  Schema.Literals(["tcp", "unix", "udp", "conn", "file", "IPv4", "udp6"]),
  Schema.Array(Schema.Int).check(Schema.isMaxLength(2)),
  Schema.Record(Schema.String, Schema.Int).check(Schema.isMaxProperties(2))
])

const cases = Arbitrary.all([
  Arbitrary.schema(Manifest),
  Arbitrary.schema(Schema.Array(between(0, Number.MAX_SAFE_INTEGER)).check(Schema.isMaxLength(4))),
  Arbitrary.schema(json),
  Arbitrary.schema(Schema.Boolean)
])

/** Draws the cases up front (deterministic from `seed`) and runs `property` on each; a throw fails. */
export const forAll = (property: (c: Case) => void, options: { readonly runs: number; readonly seed: number }) => {
  for (const c of Effect.runSync(Arbitrary.sampleEffect(cases, { count: options.runs, seed: options.seed }))) {
    property(c)
  }
}
