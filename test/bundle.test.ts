/**
 * The compiled example as a one-file esbuild bundle (`scripts/bundle.mjs`),
 * run with plain node: it upgrades under load like the unbundled one.
 */
import { assert, beforeAll, describe, it } from "@effect/vitest"
import * as ChildProcess from "node:child_process"
import * as Path from "node:path"
import { freePort, generations, root, Run, tempDir } from "./helpers/fixture.js"
import { load, readPid, upgrade } from "./helpers/http.js"

const { track } = generations()
let bundle = ""

beforeAll(() => {
  const dir = tempDir()
  bundle = Path.join(dir, "app.mjs")
  const result = ChildProcess.spawnSync(
    process.execPath,
    ["scripts/bundle.mjs", "build/examples/http-server.js", bundle],
    { cwd: root, encoding: "utf8" }
  )
  if (result.status !== 0) throw new Error(`bundling failed:\n${result.stdout}${result.stderr}`)
}, 60_000)

describe("a one-file bundle", () => {
  it("serves keep-alive and Connection: close clients through 3 upgrades with no failed request", async () => {
    const port = await freePort()
    const pidFile = Path.join(tempDir(), "app.pid")
    const run = track(
      new Run(bundle, ["--port", String(port), "--pid-file", pidFile], {
        plain: true,
        env: { EFFECT_TABLEFLIP_ADDON: Path.join(Path.dirname(bundle), "tableflip.node") }
      })
    )
    await run.waitForLine(/: ready\b/)
    const clients = load(port, { keepAlive: 4, close: 2 })
    const pids = [readPid(pidFile)]
    for (let i = 0; i < 3; i++) {
      await upgrade(run, pidFile)
      pids.push(readPid(pidFile))
    }
    const { failures, pids: served, requests } = await clients.stop()
    assert.deepStrictEqual(failures, [])
    assert.isAbove(requests, 100)
    for (const pid of pids) assert.isTrue(served.has(pid), `generation ${pid} served`)
    process.kill(pids.at(-1)!, "SIGTERM")
    await run.ended()
  })
})
