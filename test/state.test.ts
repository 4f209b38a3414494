/**
 * State handed between generations, and readiness gated on a health check,
 * with real processes.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as State from "../src/State.js"
import * as Upgrader from "../src/Upgrader.js"
import * as UpgraderTest from "../src/UpgraderTest.js"
import type { Plan } from "./fixtures/generation.js"
import { askPid, exists, generations, type Run, upgradeFrom, writePlan } from "./helpers/fixture.js"

const { start } = generations()

const serving = async (plan: Partial<Plan>) => {
  const { planFile, run } = start({ listen: [{ host: "127.0.0.1", port: 0 }], ...plan })
  const first = await run.waitFor((e) => e.event === "ready")
  const target = { host: "127.0.0.1", port: first.listeners[0].port as number }
  const next = (successor: Partial<Plan>) => writePlan(planFile, { listen: [target], ...successor })
  return { run, first: first.pid as number, target, next }
}

const stateOf = (run: Run, pid: number) =>
  run.waitFor((e) => (e.event === "state" || e.event === "state-error") && e.pid === pid)

describe("state", () => {
  it("round-trips across 3 generations, typed", async () => {
    const { first, next, run } = await serving({ state: "v1" })
    assert.strictEqual((await stateOf(run, first)).pids, null, "a first generation inherits nothing")
    next({ state: "v1" })
    const second = await upgradeFrom(run, first)
    assert.deepStrictEqual((await stateOf(run, second)).pids, [first])
    const third = await upgradeFrom(run, second)
    assert.deepStrictEqual((await stateOf(run, third)).pids, [first, second])
  })

  it("gives a typed Decode error when the schema changed between versions", async () => {
    const { first, next, run, target } = await serving({ state: "v1" })
    next({ state: "v2" })
    const second = await upgradeFrom(run, first)
    const error = await stateOf(run, second)
    assert.strictEqual(error.event, "state-error")
    assert.strictEqual(error.tag, "StateError")
    assert.strictEqual(error.reason, "Decode")
    assert.include(error.message, "\"history\"")
    assert.include(error.message, "Expected string")
    assert.strictEqual(await askPid(target), second, "the new generation decides what to do; here it serves")
  })

  it("carries 10 MB, and refuses more than maxStateBytes with a typed error before starting anything", async () => {
    const { first, next, run, target } = await serving({ state: "v1", stateBytes: 10_000_000 })
    next({ state: "v1", stateBytes: 10_000_000, maxStateBytes: 1_000_000 })
    const second = await upgradeFrom(run, first)
    assert.strictEqual((await stateOf(run, second)).blobBytes, 10_000_000)

    process.kill(second, "SIGUSR2")
    const failed = await run.waitFor((e) => e.event === "upgrade-failed")
    assert.strictEqual(failed.tag, "StateError")
    assert.strictEqual(failed.reason, "TooLarge")
    assert.match(failed.message, /10000\d{3} bytes encoded, over the limit of 1000000/)
    assert.deepStrictEqual(
      run.events.filter((e) => e.event === "started" && e.generation === 3),
      [],
      "nothing was started"
    )
    assert.strictEqual(await askPid(target), second)
  })
})

describe("readiness gated on a health check", () => {
  it("passes with a probe of the new generation's own listener", async () => {
    const { first, next, run, target } = await serving({})
    next({ healthCheck: "pass" })
    const second = await upgradeFrom(run, first)
    assert.strictEqual(await askPid(target), second)
  })

  it("fails the upgrade with HealthCheckFailed, and the old generation keeps serving", async () => {
    const { first, next, run, target } = await serving({})
    next({ healthCheck: "fail" })
    process.kill(first, "SIGUSR2")
    const failed = await run.waitFor((e) => e.event === "upgrade-failed")
    assert.strictEqual(failed.tag, "HealthCheckFailed")
    assert.strictEqual(failed.reason, "the database is unreachable")
    assert.include(failed.message, `pid ${failed.pid}`)
    // The old generation did not wait for it to exit: it killed and reaped it.
    assert.isFalse(exists(failed.pid), "reaped")
    assert.strictEqual(await askPid(target), first)
    next({})
    assert.notStrictEqual(await upgradeFrom(run, first), first, "and can upgrade again")
  })
})

describe("state that does not survive JSON", () => {
  it("NaN fails the upgrade with StateError Encode before anything starts; the old generation serves on", async () => {
    const { first, run, target } = await serving({ state: "v1", stateNaN: true })
    process.kill(first, "SIGUSR2")
    const failed = await run.waitFor((e) => e.event === "upgrade-failed")
    assert.strictEqual(failed.tag, "StateError")
    assert.strictEqual(failed.reason, "Encode")
    assert.include(failed.message, "NaN at .pids[0] would arrive as null")
    assert.deepStrictEqual(run.events.filter((e) => e.event === "started" && e.generation === 2), [])
    assert.strictEqual(await askPid(target), first)
  })

  it.effect("in process: NaN, Infinity, a Date, a Map and undefined in an array are refused, typed", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [unknown, string]> = [
        [{ n: NaN }, "NaN at .n"],
        [[1, Infinity], "Infinity at [1]"],
        [{ at: new Date(0) }, "a Date at .at"],
        [{ m: new Map() }, "a Map at .m"],
        [[undefined], "undefined at [0]"]
      ]
      for (const [value, expected] of cases) {
        const error = yield* offered(value).pipe(Effect.flip)
        assert.strictEqual(error.reason, "Encode")
        assert.include(error.message, expected)
      }
      assert.deepStrictEqual(yield* offered({ a: [1, "x", null, { b: true }], c: undefined }), {
        k: { a: [1, "x", null, { b: true }], c: undefined }
      })
    }))

  it.effect("in process: handed-over state that is not JSON, null or an array is a typed Decode error", () =>
    Effect.gen(function*() {
      for (const [text, expected] of [["{not json", "is not JSON"], ["null", "is null"], ["[1]", "not an object"]]) {
        const error = yield* Any.inherited.pipe(Effect.provide(inheriting(text!)), Effect.flip)
        assert.strictEqual(error._tag, "StateError")
        assert.strictEqual(error.reason, "Decode")
        assert.include(error.message, expected)
      }
    }))
})

const Any = State.make("k", Schema.Unknown)

/** What an upgrade would send for `value` offered under "k". */
const offered = (value: unknown) =>
  Effect.gen(function*() {
    yield* Any.offer(Effect.succeed(value))
    return yield* UpgraderTest.UpgraderTest.pipe(Effect.flatMap((test) => test.offeredState))
  }).pipe(Effect.scoped, Effect.provide(UpgraderTest.layer()))

/** An Upgrader whose previous generation handed over `text`, raw. */
const inheriting = (text: string) =>
  Layer.effect(
    Upgrader.Upgrader,
    Effect.map(UpgraderTest.make(), ({ upgrader }) => ({ ...upgrader, inheritedState: text }))
  )
