/**
 * The compiled example as a V8 start-up snapshot (`scripts/snapshot.mjs`),
 * started with `node --snapshot-blob`: it upgrades under load like the
 * unbundled one, and every generation starts from the same blob.
 */
import { assert, beforeAll, describe, it } from "@effect/vitest"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { freePort, generations, root, Run, tempDir } from "./helpers/fixture.js"
import { load, readPid, upgrade } from "./helpers/http.js"

const { track } = generations()
let blob = ""

beforeAll(() => {
  blob = Path.join(tempDir(), "app.blob")
  // The blob only loads in the node that built it: this one, which also runs the test's processes.
  const result = ChildProcess.spawnSync(
    process.execPath,
    ["scripts/snapshot.mjs", "build/examples/http-server.js", blob],
    { cwd: root, encoding: "utf8" }
  )
  if (result.status !== 0) throw new Error(`building the snapshot failed:\n${result.stdout}${result.stderr}`)
}, 120_000)

const cmdline = (pid: number): Array<string> => Fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").slice(0, -1)

describe("a V8 start-up snapshot", () => {
  it("serves keep-alive and Connection: close clients through 3 upgrades with no failed request, every generation from the blob", async () => {
    const port = await freePort()
    const pidFile = Path.join(tempDir(), "app.pid")
    const args = ["--port", String(port), "--pid-file", pidFile]
    // No script: `node --snapshot-blob <blob> -- <arguments>` (Run puts its "file" right after node).
    const run = track(
      new Run("--snapshot-blob", [blob, "--", ...args], {
        plain: true,
        env: { EFFECT_TABLEFLIP_ADDON: Path.join(Path.dirname(blob), "tableflip.node") }
      })
    )
    await run.waitForLine(/: ready\b/)
    const expected = [process.execPath, "--snapshot-blob", blob, "--", ...args]
    const first = readPid(pidFile)
    assert.strictEqual(first, run.process.pid)
    assert.deepStrictEqual(cmdline(first), expected)
    const clients = load(port, { keepAlive: 4, close: 2 })
    const pids = [first]
    for (let i = 0; i < 3; i++) {
      await upgrade(run, pidFile)
      const pid = readPid(pidFile)
      // The generation the library spawned: execPath, execArgv and the arguments again, so the same blob.
      assert.deepStrictEqual(cmdline(pid), expected, `generation ${i + 2} (pid ${pid})`)
      pids.push(pid)
    }
    const { failures, pids: served, requests } = await clients.stop()
    assert.deepStrictEqual(failures, [])
    assert.isAbove(requests, 100)
    for (const pid of pids) assert.isTrue(served.has(pid), `generation ${pid} served`)
    process.kill(pids.at(-1)!, "SIGTERM")
    await run.ended()
  })
})
