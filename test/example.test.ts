/**
 * examples/http-server.ts as a user runs it: keep-alive clients through
 * upgrades, a slow request across one, and SIGTERM.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Http from "node:http"
import * as Path from "node:path"
import { freePort, generations, Run, tempDir } from "./helpers/fixture.js"

const { track } = generations()

const get = (port: number, agent: Http.Agent, path = "/"): Promise<{ status: number; body: string }> =>
  new Promise((resolve, reject) => {
    Http.get({ host: "127.0.0.1", port, path, agent }, (response) => {
      let body = ""
      response.setEncoding("utf8").on("data", (chunk: string) => (body += chunk))
      response.on("end", () => resolve({ status: response.statusCode!, body }))
      response.on("error", reject)
    }).on("error", reject)
  })

const readPid = (file: string): number => Number(Fs.readFileSync(file, "utf8"))

describe("examples/http-server.ts", () => {
  it("serves keep-alive clients through 3 upgrades with no failed request, then drains on SIGTERM", async () => {
    const port = await freePort()
    const pidFile = Path.join(tempDir(), "app.pid")
    const run = new Run("examples/http-server.ts", ["--port", String(port), "--pid-file", pidFile])
    track(run)
    await run.waitForLine(/generation 1 serving/)
    const first = readPid(pidFile)

    let done = false
    const failures: Array<string> = []
    const pids = new Set<number>()
    let requests = 0
    const client = async () => {
      const agent = new Http.Agent({ keepAlive: true, maxSockets: 1 })
      while (!done) {
        try {
          const { body, status } = await get(port, agent)
          requests++
          if (status !== 200) failures.push(`status ${status}`)
          pids.add(Number(/pid (\d+)/.exec(body)?.[1]))
        } catch (error) {
          failures.push((error as NodeJS.ErrnoException).code ?? String(error))
        }
      }
      agent.destroy()
    }
    const load = Promise.all(Array.from({ length: 8 }, client))

    const slow = get(port, new Http.Agent({ keepAlive: true }), "/?delay=500ms")
    for (let generation = 2; generation <= 4; generation++) {
      const from = run.output.length
      process.kill(readPid(pidFile), "SIGHUP")
      await run.waitForLine(new RegExp(`generation ${generation} serving`), from)
      await run.waitForLine(/the previous generation has exited/, from)
    }
    done = true
    await load

    assert.deepStrictEqual(failures, [])
    assert.isAbove(requests, 100)
    assert.isAtLeast(pids.size, 2, `pids that served: ${[...pids].join(", ")}`)
    assert.deepStrictEqual(await slow, { status: 200, body: `hello from pid ${first}\n` })
    assert.strictEqual(await run.exited(), 0, "the first generation drained and exited 0")

    const last = readPid(pidFile)
    assert.notStrictEqual(last, first)
    assert.strictEqual((await get(port, new Http.Agent())).body, `hello from pid ${last}\n`)
    process.kill(last, "SIGTERM")
    await run.ended()
    const after = await get(port, new Http.Agent()).then(() => "served", (e: NodeJS.ErrnoException) => e.code)
    assert.strictEqual(after, "ECONNREFUSED")
  })

  it("exits 0 on SIGTERM", async () => {
    const port = await freePort()
    const run = new Run("examples/http-server.ts", [], { env: { PORT: String(port) } })
    track(run)
    await run.waitForLine(/generation 1 serving/)
    assert.match((await get(port, new Http.Agent())).body, /^hello from pid \d+\n$/)
    run.process.kill("SIGTERM")
    assert.strictEqual(await run.exited(), 0)
  })
})
