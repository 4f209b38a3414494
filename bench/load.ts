/**
 * The load generator: a separate process, so that the server's generations
 * and the client never share an event loop. Only ever targets 127.0.0.1.
 *
 *   node --import tsx bench/load.ts --port 8080 --clients 8 [--close] [--path /?delay=50ms]
 *                                   --out results.json [--max-seconds 120]
 *
 * Runs until SIGTERM (or --max-seconds), lets requests in flight finish,
 * writes every request's start time (ms, wall clock), latency (ms) and outcome
 * to --out, and exits. While it runs it prints `{"requests":n,"failed":n}`
 * once a second. A client that sees a failure waits 10 ms before its next
 * request.
 */
import * as Fs from "node:fs"
import * as Http from "node:http"
import { parseArgs } from "node:util"

const { values } = parseArgs({
  options: {
    port: { type: "string" },
    clients: { type: "string", default: "8" },
    close: { type: "boolean", default: false },
    path: { type: "string", default: "/" },
    out: { type: "string" },
    "max-seconds": { type: "string", default: "120" }
  }
})

const port = Number(values.port)
const now = () => performance.timeOrigin + performance.now()

export interface LoadResult {
  readonly keepAlive: boolean
  readonly clients: number
  readonly path: string
  /** Start of each request, ms since the epoch. */
  readonly start: Array<number>
  /** Latency of each request, ms; -1 where it failed. */
  readonly latency: Array<number>
  readonly pids: Record<string, number>
  readonly failures: Array<{ readonly at: number; readonly error: string }>
}

const result: LoadResult = {
  keepAlive: !values.close,
  clients: Number(values.clients),
  path: values.path,
  start: [],
  latency: [],
  pids: {},
  failures: []
}

let running = true
const stop = () => (running = false)
process.once("SIGTERM", stop)
process.once("SIGINT", stop)
const limit = setTimeout(stop, Number(values["max-seconds"]) * 1000)

const request = (agent: Http.Agent): Promise<string> =>
  new Promise((resolve, reject) => {
    const req = Http.get({
      host: "127.0.0.1",
      port,
      path: values.path,
      agent,
      headers: values.close ? { connection: "close" } : {}
    }, (response) => {
      let body = ""
      response.setEncoding("utf8").on("data", (chunk: string) => (body += chunk))
      response.on("end", () =>
        response.statusCode === 200 ? resolve(body) : reject(new Error(`HTTP ${response.statusCode}`)))
      response.on("error", reject)
    })
    req.on("error", reject)
    // A request that never completes is a failed one (and must not keep the benchmark waiting).
    req.setTimeout(10_000, () =>
      req.destroy(Object.assign(new Error("no answer in 10 s"), { code: "TIMEOUT" })))
  })

const client = async () => {
  const agent = new Http.Agent({ keepAlive: !values.close, maxSockets: 1 })
  while (running) {
    const started = now()
    try {
      const body = await request(agent)
      result.start.push(started)
      result.latency.push(now() - started)
      const pid = /pid (\d+)/.exec(body)?.[1] ?? "?"
      result.pids[pid] = (result.pids[pid] ?? 0) + 1
    } catch (error) {
      result.start.push(started)
      result.latency.push(-1)
      result.failures.push({ at: started, error: (error as NodeJS.ErrnoException).code ?? String(error) })
      // A client retries after a failure, but not in a tight loop that would starve the servers' CPU.
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  }
  agent.destroy()
}

const progress = setInterval(() => {
  process.stdout.write(`${JSON.stringify({ requests: result.start.length, failed: result.failures.length })}\n`)
}, 1000)

await Promise.all(Array.from({ length: result.clients }, client))
clearInterval(progress)
clearTimeout(limit)
Fs.writeFileSync(values.out!, JSON.stringify(result))
