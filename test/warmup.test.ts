/**
 * `Warmup.http`: requests reach the server through a private relay on
 * 127.0.0.1, never through a listening socket, and whatever ends warm-up
 * (done, a timeout, interruption) leaves no connection and no relay behind.
 * Real sockets; no sleeps: every wait is on an event.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Http from "node:http"
import * as Net from "node:net"
import * as Drain from "../src/Drain.js"
import * as Fx from "../src/internal/fx.js"
import * as Warmup from "../src/Warmup.js"
import { replaceLogger } from "./helpers/logging.js"

/** A server that listens nowhere, with what its handler saw. */
const serve = (handler: (request: Http.IncomingMessage, response: Http.ServerResponse) => void) => {
  const seen: Array<{ readonly port: number; readonly connection: string | undefined }> = []
  const server = Http.createServer((request, response) => {
    seen.push({ port: request.socket.localPort!, connection: request.headers.connection })
    handler(request, response)
  })
  return { server, tracker: Drain.track(server), seen }
}

/** Whether a connection to 127.0.0.1:`port` is refused. */
const refused = (port: number) =>
  Fx.callback<boolean>((resume) => {
    const socket = Net.connect(port, "127.0.0.1")
    socket.once("connect", () => {
      socket.destroy()
      resume(Effect.succeed(false))
    })
    socket.once("error", (error: NodeJS.ErrnoException) => resume(Effect.succeed(error.code === "ECONNREFUSED")))
  })

/** The log lines written while `effect` runs. */
const logged = <A>(effect: Effect.Effect<A>) =>
  Effect.gen(function*() {
    const lines: Array<string> = []
    const logger = replaceLogger((level, message) => lines.push(`${level} ${String(message)}`))
    const result = yield* effect.pipe(Effect.provide(logger))
    return { result, lines }
  })

describe("Warmup.http", () => {
  it.effect("sends N requests through a relay, half kept alive, and leaves nothing open", () =>
    Effect.gen(function*() {
      const { seen, server, tracker } = serve((_request, response) => response.end("ok"))
      const report = yield* Warmup.http(server, { requests: 24, concurrency: 4 })
      assert.strictEqual(report.requests, 24)
      assert.strictEqual(report.failed, 0)
      assert.strictEqual(report.errors, 0)
      assert.isFalse(report.timedOut)
      assert.deepStrictEqual(report.statuses, { 200: 24 })
      assert.strictEqual(seen.length, 24)
      assert.strictEqual(seen.filter((request) => request.connection === "close").length, 12)
      assert.strictEqual(server.listening, false, "warm-up does not make the server listen")
      assert.strictEqual(tracker.connections(), 0)
      const ports = new Set(seen.map((request) => request.port))
      assert.strictEqual(ports.size, 1, "one relay")
      assert.isTrue(yield* refused([...ports][0]!), "the relay no longer listens")
    }))

  it.effect("counts answers other than 2xx, warns once naming the request, and does not fail", () =>
    Effect.gen(function*() {
      const { seen, server, tracker } = serve((_request, response) => {
        response.statusCode = 404
        response.end("no")
      })
      const { lines, result } = yield* logged(Warmup.http(server, { requests: 10, path: "/nope" }))
      assert.strictEqual(result.requests, 10)
      assert.strictEqual(result.failed, 10)
      assert.deepStrictEqual(result.statuses, { 404: 10 })
      assert.strictEqual(seen.length, 10)
      assert.strictEqual(tracker.connections(), 0)
      const warnings = lines.filter((line) => line.startsWith("WARN"))
      assert.strictEqual(warnings.length, 1, lines.join("\n"))
      assert.include(warnings[0], "GET /nope")
      assert.include(warnings[0], "status 404")
      assert.include(warnings[0], "without side effects")
    }))

  // Live: the timeout is on the real clock, not it.effect's TestClock.
  it.live("stops at its timeout when the handler never answers, closing the relay and its connections", () =>
    Effect.gen(function*() {
      const closed: Array<boolean> = []
      const { seen, server, tracker } = serve((_request, response) => {
        response.once("close", () => closed.push(response.writableEnded))
      })
      const { lines, result } = yield* logged(Warmup.http(server, { requests: 16, timeout: "200 millis" }))
      assert.isTrue(result.timedOut)
      assert.strictEqual(result.requests, 0)
      assert.strictEqual(closed.length, seen.length, "every pending response was closed")
      assert.strictEqual(tracker.connections(), 0)
      // On a loaded machine no request may have arrived within 200 ms; then there is no port to try.
      if (seen.length > 0) assert.isTrue(yield* refused(seen[0]!.port))
      assert.isTrue(lines.some((line) => line.startsWith("WARN") && line.includes("timeout")), lines.join("\n"))
    }))

  it.effect("interrupted, it closes the relay and its connections before it returns", () =>
    Effect.gen(function*() {
      const first = yield* Deferred.make<void>()
      const { seen, server, tracker } = serve(() => Fx.doneUnsafe(first, Effect.void))
      const fiber = yield* Fx.fork(Warmup.http(server, { requests: 8 }))
      yield* Deferred.await(first)
      yield* Fiber.interrupt(fiber)
      assert.strictEqual(tracker.connections(), 0)
      assert.isTrue(yield* refused(seen[0]!.port))
    }))

  it.effect("with no requests it opens nothing", () =>
    Effect.gen(function*() {
      const { seen, server } = serve((_request, response) => response.end())
      const report = yield* Warmup.http(server, { requests: 0 })
      assert.strictEqual(report.requests, 0)
      assert.strictEqual(seen.length, 0)
    }))
})
