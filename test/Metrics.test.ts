/**
 * The metrics an upgrade records, read back from Effect's metric registry,
 * with the real layer in a first generation (this test process).
 */
import { assert, describe } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fx from "../src/internal/fx.js"
import * as Metrics from "../src/Metrics.js"
import * as Upgrader from "../src/Upgrader.js"
import { it } from "./helpers/it.js"

const count = (outcome: string) => Fx.counterCount(Metrics.upgrades, "outcome", outcome)

describe("Metrics", () => {
  it.scoped("counts upgrades by outcome, and stop completes exit", () =>
    Effect.gen(function*() {
      const upgrader = yield* Upgrader.Upgrader
      assert.isFalse(upgrader.hasParent)
      assert.strictEqual(upgrader.generation, 1)
      const before = yield* count("NotReady")
      const error = yield* Effect.flip(upgrader.upgrade)
      assert.strictEqual(error._tag, "NotReady")
      assert.strictEqual(yield* count("NotReady"), before + 1)

      yield* upgrader.stop
      assert.strictEqual(yield* upgrader.exit, "stopped")
      const stoppedBefore = yield* count("Stopped")
      const stopped = yield* Effect.flip(upgrader.upgrade)
      assert.strictEqual(stopped._tag, "Stopped")
      assert.strictEqual(yield* count("Stopped"), stoppedBefore + 1)
    }).pipe(Effect.provide(Upgrader.layer())))
})
