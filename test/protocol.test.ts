/**
 * The hand-written manifest check against the `effect/Schema` definition it
 * replaced (kept in helpers/manifestSchema.ts, where loading Schema costs a generation nothing):
 * they must accept and reject the same documents and decode them alike.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Fx from "../src/internal/fx.js"
import * as Protocol from "../src/internal/protocol.js"
import { bySchema, forAll } from "./helpers/manifestSchema.js"

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

describe("the handover manifest, checked by hand", () => {
  it("accepts and rejects what the Schema it replaced does, and decodes alike", () => {
    let rejected = 0
    forAll(([manifest, path, replacement, intact]) => {
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
    }, { runs: 1500, seed: 20261201 })
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
