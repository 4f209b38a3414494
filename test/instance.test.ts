/**
 * One live `Upgrader` per process: a second one fails at build with a typed
 * error that says how to share one, and a new one may be built once the live
 * one's scope has closed. In this test process, and with real generations.
 */
import { assert, describe } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as DirectoryUpgrader from "../src/DirectoryUpgrader.js"
import * as Fx from "../src/internal/fx.js"
import * as Upgrader from "../src/Upgrader.js"
import { generations, tempDir, upgradeFrom, within, writePlan } from "./helpers/fixture.js"
import { it } from "./helpers/it.js"
import { minimumLogLevel } from "./helpers/logging.js"

const { start } = generations()

const quiet = minimumLogLevel("Error")

/** Builds the layer in its own scope, which stays open for the rest of the test. */
const build = <E>(layer: Layer.Layer<Upgrader.Upgrader, E>) =>
  Effect.map(Layer.build(layer), (context) => Context.get(context, Upgrader.Upgrader))

describe("one Upgrader per process, in process", () => {
  it.scopedLive("refuses a second one while the first is live, naming the fix", () =>
    Effect.gen(function*() {
      const first = yield* build(Upgrader.layer())
      assert.strictEqual(first.generation, 1)
      for (
        const [refused, layer] of [
          ["Upgrader.layer", Upgrader.layer()],
          ["Upgrader.layer", Upgrader.layerConfig()],
          ["DirectoryUpgrader.layer", DirectoryUpgrader.layer({ dir: tempDir() })]
        ] as const
      ) {
        const error = yield* Effect.flip(Effect.scoped(build(layer as Layer.Layer<Upgrader.Upgrader, unknown>)))
        assert.strictEqual((error as { _tag: string })._tag, "DuplicateUpgrader")
        const duplicate = error as { readonly live: string; readonly refused: string; readonly message: string }
        assert.strictEqual(duplicate.live, "Upgrader.layer")
        assert.strictEqual(duplicate.refused, refused)
        assert.include(duplicate.message, `process ${process.pid} already has a live Upgrader`)
        assert.include(duplicate.message, "Layer.memoize")
      }
    }).pipe(Effect.provide(quiet)))

  it.scopedLive("builds a new one once the live one's scope has closed, again and again", () =>
    Effect.gen(function*() {
      for (let i = 0; i < 3; i++) {
        const upgrader = yield* Effect.scoped(build(Upgrader.layer()))
        assert.strictEqual(upgrader.generation, 1)
      }
      // Also after a build that failed for another reason (a broken handover, which it reads and removes).
      process.env["EFFECT_TABLEFLIP_HANDOVER"] = "{"
      const broken = yield* Effect.flip(Effect.scoped(build(Upgrader.layer())))
      assert.strictEqual(broken._tag, "HandoverError")
      assert.strictEqual((yield* Effect.scoped(build(Upgrader.layer()))).generation, 1)
    }).pipe(Effect.provide(quiet)))

  it.scopedLive("of two built at once, exactly one is live", () =>
    Effect.gen(function*() {
      const results = yield* Effect.all([build(Upgrader.layer()), build(Upgrader.layer())].map(Fx.result), {
        concurrency: 2
      })
      assert.deepStrictEqual(results.map(Fx.isSuccess).sort(), [false, true])
    }).pipe(Effect.provide(quiet)))

  it.scopedLive("one layer value provided once to two consumers is built once: the way to share it", () =>
    Effect.gen(function*() {
      const seen: Array<Fx.ShapeOf<Upgrader.Upgrader>> = []
      const consumer = Layer.effectDiscard(Effect.map(Upgrader.Upgrader, (upgrader) => seen.push(upgrader)))
      yield* Layer.build(Layer.merge(consumer, consumer.pipe(Layer.fresh)).pipe(Layer.provide(Upgrader.layer())))
      assert.strictEqual(seen.length, 2)
      assert.strictEqual(seen[0], seen[1])
    }).pipe(Effect.provide(quiet)))

  it.scopedLive("Layer.memoize shares one across separate provides", () =>
    Effect.gen(function*() {
      const shared = yield* Fx.memoizeLayer(Upgrader.layer())
      const a = yield* Effect.provide(Upgrader.Upgrader, shared)
      const b = yield* Effect.provide(Upgrader.Upgrader, shared)
      assert.strictEqual(a, b)
    }).pipe(Effect.provide(quiet)))
})

describe("one Upgrader per process, with real generations", () => {
  it("refuses a second one in every generation, and the upgrade between them works", async () => {
    const { planFile, run } = start({ listen: [{ host: "127.0.0.1", port: 0 }], secondUpgrader: true })
    const first = await within(run.waitFor((e) => e.event === "ready"), 30_000, "generation 1 is ready")
    writePlan(planFile, { listen: [{ host: "127.0.0.1", port: first.listeners[0].port }], secondUpgrader: true })
    const second = await within(upgradeFrom(run, first.pid), 60_000, "the upgrade")
    for (const pid of [first.pid, second]) {
      const refused = run.events.find((e) => e.event === "second-upgrader" && e.pid === pid)!
      assert.strictEqual(refused.tag, "DuplicateUpgrader", JSON.stringify(refused))
      assert.include(refused.message, `process ${pid} already has a live Upgrader`)
    }
    const started = run.events.find((e) => e.event === "started" && e.pid === second)!
    assert.strictEqual(started.generation, 2)
  })
})
