/**
 * `HttpServer.layer` with the platform's HttpRouter, on Effect 3 and 4 alike (the app comes from
 * helpers/platform.ts, one per major): routes and a WebSocket on a registry listener, warm-up
 * before the layer is built, and the drain when the serving scope closes. Real sockets, no sleeps.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import * as Http from "node:http"
import type * as Net from "node:net"
import WebSocket from "ws"
import * as TableflipHttp from "../src/HttpServer.js"
import * as UpgraderTest from "../src/UpgraderTest.js"
import { get } from "./helpers/http.js"
import { serveRoutes } from "./helpers/platform.js"

describe("HttpServer.layer", () => {
  // Live: the drain deadline runs on the real clock.
  it.live("serves HttpRouter routes and a WebSocket; closing the scope drains, closing the WebSocket (1001)", () =>
    Effect.gen(function*() {
      const raw = Http.createServer()
      const App = serveRoutes({ "/hello": Effect.succeed("hi") }).pipe(
        Layer.provide(
          TableflipHttp.layer({ host: "127.0.0.1", port: 0 }, { server: () => raw, deadline: "300 millis" })
        )
      )
      const scope = yield* Scope.make()
      yield* Layer.buildWithScope(App, scope)
      const port = (raw.address() as Net.AddressInfo).port

      assert.deepStrictEqual(yield* Effect.promise(() => get(port, new Http.Agent(), "/hello")), {
        status: 200,
        body: "hi"
      })
      const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`)
      const closed = new Promise<number>((resolve) => ws.once("close", (code) => resolve(code)))
      yield* Effect.promise(() => new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject)))
      const echoed = new Promise((resolve) => ws.once("message", (data) => resolve(String(data))))
      ws.send("echo me")
      assert.strictEqual(yield* Effect.promise(() => echoed), "echo me")

      yield* Scope.close(scope, Exit.void)
      assert.strictEqual(yield* Effect.promise(() => closed), 1001, "the drain closed it at its deadline: going away")
      assert.isFalse(raw.listening)
    }).pipe(Effect.provide(UpgraderTest.layer())))

  it.effect("an HttpRouter app gets the warm-up requests before the layer is built, off the shared socket", () =>
    Effect.gen(function*() {
      let answered = 0
      const raw = Http.createServer()
      const ports: Array<number> = []
      raw.prependListener("request", (request: Http.IncomingMessage) => ports.push(request.socket.localPort!))
      const App = serveRoutes({ "/warm": Effect.sync(() => (answered++, "ok")) }).pipe(
        Layer.provide(TableflipHttp.layer(
          { host: "127.0.0.1", port: 0 },
          { server: () => raw, warmup: { requests: 12, path: "/warm" } }
        ))
      )
      yield* Layer.build(App)
      assert.strictEqual(answered, 12)
      assert.strictEqual(ports.length, 12)
      const listening = (raw.address() as Net.AddressInfo).port
      assert.isFalse(ports.includes(listening), "warm-up went through the relay")
    }).pipe(Effect.scoped, Effect.provide(UpgraderTest.layer())))
})
