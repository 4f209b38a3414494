/**
 * A plain `node:http` server that upgrades itself without dropping a request.
 *
 *   npm run example -- --port 8080 --pid-file /tmp/app.pid     (or PORT=8080 PID_FILE=/tmp/app.pid)
 *   npm run example -- --log-format json                        (or LOG_FORMAT=json: one JSON object a line)
 *   curl 'http://127.0.0.1:8080/?delay=200ms'                  -> hello from pid 1234
 *   kill -HUP $(cat /tmp/app.pid)                               -> a new generation takes over
 *   npx effect-tableflip prepare --pid-file /tmp/app.pid        -> the next one starts and parks, loaded
 *   npx effect-tableflip upgrade --pid-file /tmp/app.pid        -> ... and takes over in tens of ms
 *   kill -TERM $(cat /tmp/app.pid)                              -> drain and exit 0
 */
import * as Drain from "effect-tableflip/Drain"
import * as Fds from "effect-tableflip/Fds"
import * as Upgrader from "effect-tableflip/Upgrader"
import * as Warmup from "effect-tableflip/Warmup"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Http from "node:http"
import { parseArgs } from "node:util"
import { runMain } from "./main.js"

const { values } = parseArgs({
  options: {
    port: { type: "string", default: process.env["PORT"] ?? "8080" },
    host: { type: "string", default: process.env["HOST"] ?? "127.0.0.1" },
    "pid-file": { type: "string", default: process.env["PID_FILE"] },
    // "json": one JSON object per line (Effect's Logger.json), for log shippers.
    "log-format": { type: "string", default: process.env["LOG_FORMAT"] ?? "pretty" }
  }
})
const json = values["log-format"] === "json"

const handler = (request: Http.IncomingMessage, response: Http.ServerResponse) => {
  const delay = parseDelay(new URL(request.url ?? "/", "http://localhost").searchParams.get("delay"))
  if (delay === undefined) {
    response.writeHead(400, { "content-type": "text/plain" }).end("delay must look like 200ms or 2s\n")
    return
  }
  const timer = setTimeout(() => {
    response.writeHead(200, { "content-type": "text/plain" }).end(`hello from pid ${process.pid}\n`)
  }, delay)
  response.once("close", () => clearTimeout(timer))
}

const parseDelay = (text: string | null): number | undefined => {
  if (text === null) return 0
  const match = /^(\d+)(ms|s)?$/.exec(text)
  if (match === null) return undefined
  return Number(match[1]) * (match[2] === "s" ? 1000 : 1)
}

const raw = Http.createServer(handler)

const main = Effect.gen(function*() {
  const upgrader = yield* Upgrader.Upgrader
  const server = yield* Fds.listen({ host: values.host, port: Number(values.port) }, raw)
  yield* Drain.http(server, { deadline: "30 seconds" })
  yield* upgrader.ready
  yield* Effect.logInfo(`generation ${upgrader.generation} serving http://${values.host}:${values.port}/`)
  const reason = yield* upgrader.exit
  yield* Effect.logInfo(`${reason}: draining`)
})

// Options win over TABLEFLIP_PID_FILE, TABLEFLIP_UPGRADE_TIMEOUT and TABLEFLIP_PROBATION.
// SIGHUP upgrades; SIGUSR2 (`effect-tableflip prepare`) starts the next generation ahead of it.
const UpgraderLive = Upgrader.layerSignal("SIGHUP", { prepare: "SIGUSR2" }).pipe(
  Layer.provideMerge(Upgrader.layerConfig({ pidFile: values["pid-file"] }))
)

// Cold code would serve the first clients after `ready`: warm it up first, before it shares the
// socket, and before the Upgrader layer, so that a prepared generation is warm when it parks.
runMain(Warmup.http(raw, { path: "/" }).pipe(Effect.andThen(main.pipe(Effect.scoped, Effect.provide(UpgraderLive)))), {
  json
})
