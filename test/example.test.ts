/**
 * The examples as a user runs them: HTTP clients through chained upgrades,
 * slow requests across one, a drain deadline, WebSockets, and SIGTERM.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Http from "node:http"
import WebSocket from "ws"
import { freePort, generations, Run, within } from "./helpers/fixture.js"
import { get, load, readPid, startWith, upgrade } from "./helpers/http.js"

const { track } = generations()
const startExample = startWith(track)

/** One wait of a test, with its own deadline: past it, the failure names the step and shows the generations' output. */
const step = <A>(run: Run, what: string, promise: Promise<A>, ms = 15_000): Promise<A> =>
  within(promise, ms, what).catch((error: Error) => {
    throw new Error(`${error.message}\n--- output:\n${run.output.join("\n")}`)
  })

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
    await step(
      run,
      "the WebSocket opens",
      new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject))
    )
    const echoed = new Promise((resolve) => ws.once("message", (data) => resolve(String(data))))
    ws.send("hi")
    assert.strictEqual(await step(run, "the WebSocket echoes", echoed), "hi")
    const closed = new Promise<number>((resolve) => ws.once("close", (code) => resolve(code)))
    // Far longer than the deadline: for this test it never finishes.
    const stuck = get(port, new Http.Agent(), "/?delay=600s").then(
      () => "answered",
      (e: NodeJS.ErrnoException) => e.code
    )

    const from = run.output.length
    process.kill(readPid(pidFile), "SIGHUP")
    await step(run, "the old generation drains", run.waitForLine(/draining/, from))
    const drainStarted = Date.now()
    const code = await step(run, "the old generation exits", run.exited())
    const drainTook = Date.now() - drainStarted

    assert.strictEqual(code, 0)
    assert.strictEqual(
      await step(run, "the WebSocket closes", closed),
      1001,
      "the WebSocket got a close frame: going away"
    )
    assert.strictEqual(await step(run, "the stuck request ends", stuck), "ECONNRESET", "the stuck request was cut")
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
