/**
 * `HttpServer.layer`'s `warmup` option (moved out of warmup.test.ts, which is the same on
 * Effect 3 and 4): an app's router gets the warm-up requests through the relay before the
 * layer is built. It uses @effect/platform's HTTP API, which Effect 4 moved, so it is one of
 * the HttpServer tests that differ per major.
 */
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Http from "node:http"
import type * as Net from "node:net"
import * as TableflipHttp from "../src/HttpServer.js"
import * as UpgraderTest from "../src/UpgraderTest.js"

describe("HttpServer.layer's warmup option", () => {
  it.effect("an HttpRouter app gets the warm-up requests before the layer is built, off the shared socket", () =>
    Effect.gen(function*() {
      let answered = 0
      const raw = Http.createServer()
      const ports: Array<number> = []
      raw.prependListener("request", (request: Http.IncomingMessage) => ports.push(request.socket.localPort!))
      const App = HttpRouter.empty.pipe(
        HttpRouter.get(
          "/warm",
          Effect.sync(() => {
            answered++
            return HttpServerResponse.text("ok")
          })
        ),
        HttpServer.serve(),
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
