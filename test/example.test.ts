/**
 * The examples as a user runs them: HTTP clients through chained upgrades,
 * slow requests across one, a drain deadline, WebSockets, and SIGTERM.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Http from "node:http"
import * as Path from "node:path"
import WebSocket from "ws"
import { freePort, generations, Run, tempDir } from "./helpers/fixture.js"

const { track } = generations()

const get = (port: number, agent: Http.Agent, path = "/", headers: Http.OutgoingHttpHeaders = {}) =>
  new Promise<{ status: number; body: string }>((resolve, reject) => {
    Http.get({ host: "127.0.0.1", port, path, agent, headers }, (response) => {
      let body = ""
      response.setEncoding("utf8").on("data", (chunk: string) => (body += chunk))
      response.on("end", () => resolve({ status: response.statusCode!, body }))
      response.on("error", reject)
    }).on("error", reject)
  })

const readPid = (file: string): number => Number(Fs.readFileSync(file, "utf8"))

/** Starts an example on a free port with a PID file, and waits until generation 1 is ready. */
const startExample = async (file: string, args: ReadonlyArray<string> = []) => {
  const port = await freePort()
  const pidFile = Path.join(tempDir(), "app.pid")
  const run = track(new Run(file, ["--port", String(port), "--pid-file", pidFile, ...args]))
  // The log line of `ready`, in the pretty (terminal) or the logfmt format.
  await run.waitForLine(/(: |message=)ready\b/)
  return { run, port, pidFile }
}

/** SIGHUP to the generation in the PID file; resolves once the next one serves alone. */
const upgrade = async (run: Run, pidFile: string) => {
  const from = run.output.length
  const old = readPid(pidFile)
  process.kill(old, "SIGHUP")
  await run.waitForLine(/SIGHUP: upgraded to pid \d+/, from)
  await run.waitForLine(new RegExp(`previous generation \\(pid ${old}\\) has exited`), from)
}

/** Clients looping until `done()`: keep-alive ones and `Connection: close` ones. */
const load = (port: number, clients: { readonly keepAlive: number; readonly close: number }) => {
  let done = false
  const failures: Array<string> = []
  const pids = new Set<number>()
  let requests = 0
  const client = async (keepAlive: boolean) => {
    const agent = new Http.Agent({ keepAlive, maxSockets: 1 })
    while (!done) {
      try {
        const { body, status } = await get(port, agent, "/", keepAlive ? {} : { connection: "close" })
        requests++
        if (status !== 200) failures.push(`status ${status}`)
        pids.add(Number(/pid (\d+)/.exec(body)?.[1]))
      } catch (error) {
        failures.push((error as NodeJS.ErrnoException).code ?? String(error))
      }
    }
    agent.destroy()
  }
  const all = Promise.all([
    ...Array.from({ length: clients.keepAlive }, () => client(true)),
    ...Array.from({ length: clients.close }, () => client(false))
  ])
  return {
    stop: async () => {
      done = true
      await all
      return { failures, pids, requests }
    }
  }
}

describe("examples/http-server.ts (node:http)", () => {
  it("serves keep-alive clients through 3 upgrades with no failed request, then drains on SIGTERM", async () => {
    const { pidFile, port, run } = await startExample("examples/http-server.ts")
    const first = readPid(pidFile)
    const clients = load(port, { keepAlive: 8, close: 0 })
    const slow = get(port, new Http.Agent({ keepAlive: true }), "/?delay=500ms")
    for (let i = 0; i < 3; i++) await upgrade(run, pidFile)
    const { failures, pids, requests } = await clients.stop()

    assert.deepStrictEqual(failures, [])
    assert.isAbove(requests, 100)
    assert.isAtLeast(pids.size, 2, `pids that served: ${[...pids].join(", ")}`)
    assert.deepStrictEqual(await slow, { status: 200, body: `hello from pid ${first}\n` })
    assert.strictEqual(await run.exited(), 0, "the first generation drained and exited 0")

    const last = readPid(pidFile)
    assert.strictEqual((await get(port, new Http.Agent())).body, `hello from pid ${last}\n`)
    process.kill(last, "SIGTERM")
    await run.ended()
    const after = await get(port, new Http.Agent()).then(() => "served", (e: NodeJS.ErrnoException) => e.code)
    assert.strictEqual(after, "ECONNREFUSED")
  })

  it("takes its port from PORT and exits 0 on SIGTERM", async () => {
    const port = await freePort()
    const run = track(new Run("examples/http-server.ts", [], { env: { PORT: String(port) } }))
    await run.waitForLine(/generation 1 serving/)
    assert.match((await get(port, new Http.Agent())).body, /^hello from pid \d+\n$/)
    run.process.kill("SIGTERM")
    assert.strictEqual(await run.exited(), 0)
  })
})

describe("examples/http-platform.ts (@effect/platform)", () => {
  it("serves keep-alive and Connection: close clients through 10 chained upgrades with no failed request", async () => {
    const { pidFile, port, run } = await startExample("examples/http-platform.ts")
    const clients = load(port, { keepAlive: 6, close: 2 })
    // Started just before the upgrade: it must finish on the old generation, with 200.
    const slow = get(port, new Http.Agent(), "/?delay=2s")
    const first = readPid(pidFile)
    for (let i = 0; i < 10; i++) await upgrade(run, pidFile)
    const { failures, pids, requests } = await clients.stop()

    assert.deepStrictEqual(failures, [])
    assert.isAbove(requests, 100)
    assert.isAtLeast(pids.size, 5, `pids that served: ${[...pids].join(", ")}`)
    assert.deepStrictEqual(await slow, { status: 200, body: `hello from pid ${first}\n` })
  }, 180_000)

  it("cuts a handler that never finishes and closes an open WebSocket (1001) at the drain deadline", async () => {
    const { pidFile, port, run } = await startExample("examples/http-platform.ts", ["--deadline", "1 second"])
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`)
    await new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject))
    const echoed = new Promise((resolve) => ws.once("message", (data) => resolve(String(data))))
    ws.send("hi")
    assert.strictEqual(await echoed, "hi")
    const closed = new Promise<number>((resolve) => ws.once("close", (code) => resolve(code)))
    // Far longer than the deadline: for this test it never finishes.
    const stuck = get(port, new Http.Agent(), "/?delay=600s").then(
      () => "answered",
      (e: NodeJS.ErrnoException) => e.code
    )

    const from = run.output.length
    process.kill(readPid(pidFile), "SIGHUP")
    await run.waitForLine(/draining/, from)
    const drainStarted = Date.now()
    const code = await run.exited()
    const drainTook = Date.now() - drainStarted

    assert.strictEqual(code, 0)
    assert.strictEqual(await closed, 1001, "the WebSocket got a close frame: going away")
    assert.strictEqual(await stuck, "ECONNRESET", "the stuck request was cut")
    assert.isAtMost(drainTook, 2_000, "the old generation exited within the deadline + 1 s")
    assert.isAtLeast(drainTook, 900, "it waited for the deadline")
  })
})

describe("examples/http-express.ts (Express)", () => {
  it("serves keep-alive clients through 3 upgrades with no failed request", async () => {
    const { pidFile, port, run } = await startExample("examples/http-express.ts")
    const clients = load(port, { keepAlive: 6, close: 2 })
    for (let i = 0; i < 3; i++) await upgrade(run, pidFile)
    const { failures, pids } = await clients.stop()
    assert.deepStrictEqual(failures, [])
    assert.isAtLeast(pids.size, 2)
    process.kill(readPid(pidFile), "SIGTERM")
    await run.ended()
  })
})
