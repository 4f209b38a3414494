/**
 * The `effect/Schema` definition of the handover manifest that the hand-written check in
 * src/internal/protocol.ts replaced, and generated cases for comparing the two (protocol.test.ts).
 * Schema, Arbitrary and FastCheck differ between Effect 3 and 4 (Effect 4 has no FastCheck and
 * builds its own arbitraries), so `manifestSchema.effect4.ts` states the same with Effect 4's.
 */
import * as Arbitrary from "effect/Arbitrary"
import * as FastCheck from "effect/FastCheck"
import * as Schema from "effect/Schema"
import type * as Fx from "../../src/internal/fx.js"
import * as Protocol from "../../src/internal/protocol.js"

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

/** The Schema's verdict on `input`: the decoded manifest, or a failure. */
export const bySchema: (input: unknown) => Fx.Result<unknown, unknown> = Schema.decodeUnknownEither(Manifest, {
  onExcessProperty: "ignore"
})

/** A generated case: a valid manifest, and where to put which arbitrary JSON value unless `intact`. */
export type Case = readonly [manifest: unknown, path: ReadonlyArray<number>, replacement: unknown, intact: boolean]

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

/** Runs `property` on `runs` generated cases from `seed`; a throw fails (and is shrunk by FastCheck). */
export const forAll = (property: (c: Case) => void, options: { readonly runs: number; readonly seed: number }) =>
  FastCheck.assert(
    FastCheck.property(
      FastCheck.tuple(
        Arbitrary.make(Manifest),
        FastCheck.array(FastCheck.nat(), { maxLength: 4 }),
        json,
        FastCheck.boolean()
      ),
      property
    ),
    { numRuns: options.runs, seed: options.seed }
  )
