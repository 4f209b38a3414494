/**
 * An Express app that upgrades itself without dropping a request. Express
 * hands its app to `http.createServer`, so it plugs into the registry and the
 * drain with no glue at all.
 *
 *   npm run example:framework -- --port 8080 --pid-file /tmp/app.pid   (or PORT / PID_FILE)
 *   curl 'http://127.0.0.1:8080/?delay=200ms'     -> hello from pid 1234
 *   kill -HUP $(cat /tmp/app.pid)                  -> a new generation takes over
 *   kill -TERM $(cat /tmp/app.pid)                 -> drain and exit 0
 */
import * as Drain from "effect-tableflip/Drain"
import * as Fds from "effect-tableflip/Fds"
import * as Upgrader from "effect-tableflip/Upgrader"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import express from "express"
import * as Http from "node:http"
import { parseArgs } from "node:util"
import { runMain } from "./main.js"

const { values } = parseArgs({
  options: {
    port: { type: "string", default: process.env["PORT"] ?? "8080" },
    host: { type: "string", default: process.env["HOST"] ?? "127.0.0.1" },
    "pid-file": { type: "string", default: process.env["PID_FILE"] }
  }
})

const app = express()
app.get("/", (request, response) => {
  const delay = typeof request.query.delay === "string" ? request.query.delay : "0ms"
  const match = /^(\d+)(ms|s)$/.exec(delay)
  if (match === null) return void response.status(400).type("text").send("delay must look like 200ms or 2s\n")
  const timer = setTimeout(() => {
    response.type("text").send(`hello from pid ${process.pid}\n`)
  }, Number(match[1]) * (match[2] === "s" ? 1000 : 1))
  response.once("close", () => clearTimeout(timer))
})

const main = Effect.gen(function*() {
  const upgrader = yield* Upgrader.Upgrader
  const server = yield* Fds.listen({ host: values.host, port: Number(values.port) }, Http.createServer(app))
  yield* Drain.http(server, { spread: "200 millis", deadline: "30 seconds" })
  yield* upgrader.ready
  yield* Effect.logInfo(`generation ${upgrader.generation} serving http://${values.host}:${values.port}/ with Express`)
  const reason = yield* upgrader.exit
  yield* Effect.logInfo(`${reason}: draining`)
})

const UpgraderLive = Upgrader.layerSignal().pipe(
  Layer.provideMerge(Upgrader.layerConfig({ pidFile: values["pid-file"] }))
)

runMain(main.pipe(Effect.scoped, Effect.provide(UpgraderLive)))
