/**
 * The cluster contender: a node:cluster primary that owns the socket and, on
 * SIGHUP, replaces its worker the way PM2's `reload` does: fork the new
 * worker, wait until it listens, then SIGINT the old one, which closes its
 * server and exits; after 1600 ms (PM2's kill_timeout) it is killed.
 */
import Cluster from "node:cluster"
import * as Http from "node:http"
import { parseArgs } from "node:util"

const { values } = parseArgs({ options: { port: { type: "string" } } })
const report = (event: string, pid: number) => process.stdout.write(`${JSON.stringify({ event, pid })}\n`)

if (Cluster.isPrimary) {
  let current = Cluster.fork()
  current.once("listening", () => report("ready", current.process.pid!))
  process.on("SIGHUP", () => {
    const old = current
    const next = Cluster.fork()
    next.once("listening", () => {
      current = next
      report("ready", next.process.pid!)
      old.once("exit", () => report("exited", old.process.pid!))
      old.process.kill("SIGINT")
      const kill = setTimeout(() => old.process.kill("SIGKILL"), 1600)
      old.once("exit", () => clearTimeout(kill))
    })
  })
  process.once("SIGTERM", () => {
    for (const worker of Object.values(Cluster.workers ?? {})) worker?.process.kill("SIGTERM")
    process.exit(0)
  })
} else {
  const server = Http.createServer((request, response) => {
    const match = /delay=(\d+)ms/.exec(request.url ?? "")
    setTimeout(() => response.end(`hello from pid ${process.pid}\n`), match === null ? 0 : Number(match[1]))
  })
  server.listen(Number(values.port), "127.0.0.1")
  const stop = () => server.close(() => process.exit(0))
  process.once("SIGINT", stop)
  process.once("SIGTERM", stop)
}
