/**
 * An Effect 4 `effect/http` HttpRouter app that upgrades itself without dropping a request.
 *
 *   npm run example:platform -- --port 8080 --pid-file /tmp/app.pid   (or PORT / PID_FILE)
 *   curl 'http://127.0.0.1:8080/?delay=200ms'     -> hello from pid 1234
 *   kill -HUP $(cat /tmp/app.pid)                  -> a new generation takes over
 *   kill -TERM $(cat /tmp/app.pid)                 -> drain and exit 0
 *
 * `/ws` is a WebSocket echo: an open socket on an old generation is closed
 * (1001, going away) at the drain deadline.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as TableflipHttp from "effect-tableflip/HttpServer"
import * as Upgrader from "effect-tableflip/Upgrader"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Layer from "effect/Layer"
import * as Http from "node:http"
import { parseArgs } from "node:util"

const { values } = parseArgs({
  options: {
    port: { type: "string", default: process.env["PORT"] ?? "8080" },
    host: { type: "string", default: process.env["HOST"] ?? "127.0.0.1" },
    "pid-file": { type: "string", default: process.env["PID_FILE"] },
    deadline: { type: "string", default: process.env["DRAIN_DEADLINE"] ?? "30 seconds" }
  }
})

const hello = Effect.gen(function*() {
  const request = yield* HttpServerRequest.HttpServerRequest
  const delay = new URL(request.url, "http://localhost").searchParams.get("delay")
  if (delay !== null) {
    const match = /^(\d+)(ms|s)$/.exec(delay)
    if (match === null) return HttpServerResponse.text("delay must look like 200ms or 2s\n", { status: 400 })
    yield* Effect.sleep(Duration.millis(Number(match[1]) * (match[2] === "s" ? 1000 : 1)))
  }
  return HttpServerResponse.text(`hello from pid ${process.pid}\n`)
})

const echo = Effect.gen(function*() {
  const request = yield* HttpServerRequest.HttpServerRequest
  const socket = yield* request.upgrade
  const { pull } = yield* socket.reader
  const { writeAll } = yield* socket.writer
  return yield* Effect.forever(Effect.flatMap(pull, writeAll))
}).pipe(
  Effect.scoped,
  // Every end of the socket, a clean close included, ends the loop with a SocketError; after the
  // 101 there is no response left to send.
  Effect.catchTag("SocketError", () => Effect.void),
  Effect.as(HttpServerResponse.empty())
)

const Routes = Layer.mergeAll(
  HttpRouter.add("GET", "/", hello),
  HttpRouter.add("GET", "/health", HttpServerResponse.text(`${process.pid}\n`)),
  HttpRouter.add("GET", "/ws", echo)
)

// As on Effect 3's `HttpServer.serve()`: no access log, no "Listening on" line.
const HttpLive = HttpRouter.serve(Routes, { disableLogger: true, disableListenLog: true }).pipe(
  Layer.provide(TableflipHttp.layer(
    { host: values.host, port: Number(values.port) },
    { deadline: Duration.fromInputUnsafe(values.deadline as Duration.Input), spread: "200 millis" }
  ))
)

// Settings such as TABLEFLIP_PROBATION come from the environment; the command line wins.
const UpgraderLive = Upgrader.layerSignal().pipe(
  Layer.provideMerge(Upgrader.layerConfig({ pidFile: values["pid-file"] }))
)

// Before it takes over, this generation must answer HTTP itself. Both generations accept on the
// same socket until then, so a probe can reach the old one: ask until this process answers.
const selfProbe = Effect.tryPromise(() =>
  new Promise<string>((resolve, reject) => {
    Http.get({ host: values.host, port: Number(values.port), path: "/health", agent: false }, (response) => {
      let body = ""
      response.setEncoding("utf8").on("data", (chunk: string) => (body += chunk))
      response.on("end", () => resolve(body.trim()))
    }).on("error", reject)
  })
).pipe(
  Effect.filterOrFail((pid) => pid === String(process.pid), () => "answered by another generation"),
  Effect.retry({ times: 50 })
)

Upgrader.launch(HttpLive, { readyWhen: selfProbe, readyTimeout: "10 seconds" }).pipe(
  Effect.provide(UpgraderLive),
  // A drain after SIGTERM exits 0 on both majors (Effect 4's own teardown exits 130).
  NodeRuntime.runMain({ teardown: Upgrader.teardown })
)
