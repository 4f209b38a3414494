/**
 * Node's compile cache across generations: flushed before the next
 * generation starts, so it starts warm (Node 22.10 and later).
 */
import { assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Module from "node:module"
import * as Path from "node:path"
import { freePort, generations, Run, tempDir } from "./helpers/fixture.js"
import { readPid } from "./helpers/http.js"

const { track } = generations()

const files = (dir: string): number =>
  Fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((entry) => entry.isFile()).length

const supported = "flushCompileCache" in Module

describe("compile cache", () => {
  it.skipIf(!supported)("is on disk before the next generation starts, while the old one still runs", async () => {
    const cache = tempDir()
    const port = await freePort()
    const pidFile = Path.join(tempDir(), "app.pid")
    const run = track(
      new Run("build/examples/http-server.js", ["--port", String(port), "--pid-file", pidFile], {
        plain: true,
        env: { NODE_COMPILE_CACHE: cache }
      })
    )
    await run.waitForLine(/: ready\b/)
    const first = readPid(pidFile)
    // Node itself writes the cache only when the process exits.
    assert.strictEqual(files(cache), 0, "nothing written yet")
    const from = run.output.length
    process.kill(first, "SIGHUP")
    await run.waitForLine(/started generation 2/, from)
    assert.isAbove(files(cache), 10, "the first generation flushed its cache before it spawned the second")
    await run.waitForLine(/SIGHUP: upgraded to pid \d+/, from)
  })
})
