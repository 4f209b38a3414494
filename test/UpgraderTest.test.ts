/**
 * The stub layer users put in their own tests.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Http from "node:http"
import type * as Net from "node:net"
import * as Drain from "../src/Drain.js"
import * as Fds from "../src/Fds.js"
import * as Fx from "../src/internal/fx.js"
import * as Upgrader from "../src/Upgrader.js"
import * as UpgraderTest from "../src/UpgraderTest.js"

/** A small app of the kind a user would test: serve, be ready, drain on exit. */
const app = (onListening: (port: number) => void) =>
  Effect.gen(function*() {
    const upgrader = yield* Upgrader.Upgrader
    const server = yield* Fds.listen(
      { host: "127.0.0.1", port: 0 },
      Http.createServer((_request, response) => response.end("ok"))
    )
    yield* Drain.http(server, { deadline: "2 seconds" })
    yield* upgrader.ready
    onListening((server.address() as Net.AddressInfo).port)
    return yield* upgrader.exit
  }).pipe(Effect.scoped)

describe("UpgraderTest", () => {
  it.live("binds fresh, counts ready, refuses to upgrade, and lets a test drive exit", () =>
    Effect.gen(function*() {
      const listening = yield* Deferred.make<number>()
      const fiber = yield* Fx.fork(app((port) => Fx.doneUnsafe(listening, Effect.succeed(port))))
      const port = yield* Deferred.await(listening)
      const test = yield* UpgraderTest.UpgraderTest
      assert.strictEqual(yield* test.readyCount, 1)
      const body = yield* Effect.promise(() => fetch(`http://127.0.0.1:${port}/`).then((r) => r.text()))
      assert.strictEqual(body, "ok")

      const upgrader = yield* Upgrader.Upgrader
      const upgrade = yield* Fx.result(upgrader.upgrade)
      assert.isTrue(Fx.isFailure(upgrade) && Fx.failureOf(upgrade)._tag === "NotSupported")
      assert.strictEqual(yield* test.upgradeCount, 1)
      const prepare = yield* Fx.result(upgrader.prepare)
      assert.isTrue(Fx.isFailure(prepare) && Fx.failureOf(prepare)._tag === "NotSupported")
      assert.strictEqual(yield* test.prepareCount, 1)
      assert.isFalse(upgrader.hasParent)

      yield* UpgraderTest.triggerExit("upgraded")
      assert.strictEqual(yield* Fiber.join(fiber), "upgraded")
      const after = yield* Effect.promise(() =>
        fetch(`http://127.0.0.1:${port}/`).then(() => "served", (e) => e.cause?.code)
      )
      assert.strictEqual(after, "ECONNREFUSED", "the listener closed with the app's scope")
    }).pipe(Effect.provide(UpgraderTest.layer())))

  it.live("can stand in for a successful upgrade and prepare", () =>
    Effect.gen(function*() {
      const upgrader = yield* Upgrader.Upgrader
      assert.deepStrictEqual(yield* upgrader.prepare, { pid: 4241 })
      assert.deepStrictEqual(yield* upgrader.upgrade, { pid: 4242 })
    }).pipe(Effect.provide(UpgraderTest.layer({
      upgrade: Effect.succeed({ pid: 4242 }),
      prepare: Effect.succeed({ pid: 4241 })
    }))))
})
