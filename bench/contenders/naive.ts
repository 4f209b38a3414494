/**
 * The naive contender: a plain node:http server. An "upgrade" is a restart:
 * SIGTERM ends it at once, as it would a server that handles no signal, then
 * the new version starts.
 */
import * as Http from "node:http"
import { parseArgs } from "node:util"

const { values } = parseArgs({ options: { port: { type: "string" } } })

const server = Http.createServer((request, response) => {
  const match = /delay=(\d+)ms/.exec(request.url ?? "")
  setTimeout(() => response.end(`hello from pid ${process.pid}\n`), match === null ? 0 : Number(match[1]))
})
server.listen(Number(values.port), "127.0.0.1", () => {
  process.stdout.write(`${JSON.stringify({ event: "ready", pid: process.pid })}\n`)
})
process.once("SIGTERM", () => process.exit(0))
