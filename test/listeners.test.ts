/**
 * Listeners across upgrades: unix socket paths, unclaimed descriptors, port 0,
 * long chains of generations.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import {
  askPid,
  fdCount,
  generations,
  holdsSocket,
  listeningInode,
  tempDir,
  upgradeFrom,
  writePlan
} from "./helpers/fixture.js"

const { start } = generations()

const refused = (target: Net.NetConnectOpts): Promise<string> =>
  new Promise((resolve, reject) => {
    const socket = Net.connect(target)
    socket.on("connect", () => {
      socket.destroy()
      reject(new Error(`${JSON.stringify(target)} accepted a connection`))
    })
    socket.on("error", (error: NodeJS.ErrnoException) => resolve(error.code ?? String(error)))
  })

const readAll = (target: Net.NetConnectOpts): Promise<string> =>
  new Promise((resolve, reject) => {
    let data = ""
    Net.connect(target).setEncoding("utf8").on("data", (chunk: string) => (data += chunk))
      .on("end", () => resolve(data)).on("error", reject)
  })

describe("listeners", () => {
  it("keeps a unix socket path through the handover, served by the child; unlinks it on the final stop", async () => {
    const dir = tempDir()
    const path = Path.join(dir, "api.sock")
    const { run } = start({ listen: [{ path }] })
    const first = await run.waitFor((e) => e.event === "ready")
    const inode = Fs.statSync(path).ino
    assert.strictEqual(await askPid({ path }), first.pid)

    const child = await upgradeFrom(run, first.pid)
    assert.isTrue(Fs.statSync(path).isSocket(), "the old generation's close left the path in place")
    assert.strictEqual(Fs.statSync(path).ino, inode, "the same socket file, not a new bind")
    assert.strictEqual(await askPid({ path }), child)

    process.kill(child, "SIGTERM")
    await run.ended()
    assert.isFalse(Fs.existsSync(path), "the last generation removed its socket file")
  })

  it("replaces a stale socket file but refuses a path a live process serves", async () => {
    const dir = tempDir()
    const path = Path.join(dir, "s.sock")
    // A live server of someone else's at the path.
    const other = Net.createServer((socket) => {
      socket.on("error", () => {})
      socket.end("other\n")
    })
    await new Promise<void>((resolve) => other.listen(path, resolve))
    try {
      const { run } = start({ listen: [{ path }] })
      const failed = await run.waitFor((e) => e.event === "failed")
      assert.strictEqual(failed.tag, "ListenError")
      assert.strictEqual(failed.reason, "AddressInUse")
      assert.include(failed.message, `unix:${path}`)
      assert.strictEqual(await run.exited(), 1)
      assert.strictEqual(await readAll({ path }), "other\n", "the other server still owns the path")
    } finally {
      // A server that dies without close() leaves a stale socket file behind; simulate that.
      await new Promise<void>((resolve) => other.close(() => resolve()))
    }
    const stale = Net.createServer()
    await new Promise<void>((resolve) => stale.listen(path, resolve))
    Fs.renameSync(path, `${path}.keep`)
    stale.close()
    Fs.renameSync(`${path}.keep`, path)
    assert.isTrue(Fs.statSync(path).isSocket())
    assert.strictEqual(await refused({ path }), "ECONNREFUSED")

    const { run } = start({ listen: [{ path }] })
    const ready = await run.waitFor((e) => e.event === "ready")
    assert.strictEqual(await askPid({ path }), ready.pid)
  })

  it("closes inherited listeners the new generation does not claim", async () => {
    const { planFile, run } = start({ listen: [{ host: "127.0.0.1", port: 0 }, { host: "127.0.0.1", port: 0 }] })
    const first = await run.waitFor((e) => e.event === "ready")
    const [kept, dropped] = first.listeners.map((l: { port: number }) => l.port) as [number, number]
    writePlan(planFile, { listen: [{ host: "127.0.0.1", port: kept }] })

    const child = await upgradeFrom(run, first.pid)
    const started = run.events.find((e) => e.event === "started" && e.pid === child)!
    assert.sameMembers(started.inherited, [`tcp:127.0.0.1:${kept}`, `tcp:127.0.0.1:${dropped}`])
    assert.strictEqual(await askPid({ host: "127.0.0.1", port: kept }), child)
    assert.strictEqual(await refused({ host: "127.0.0.1", port: dropped }), "ECONNREFUSED")
    assert.isUndefined(listeningInode(dropped), "no process listens on the dropped port")
  })

  it("registers a port-0 listener under its real port, and by name", async () => {
    const { planFile, run } = start({
      listen: [{ host: "127.0.0.1", port: 0 }, { name: "admin", host: "127.0.0.1", port: 0 }]
    })
    const first = await run.waitFor((e) => e.event === "ready")
    const [port, admin] = first.listeners.map((l: { port: number }) => l.port) as [number, number]
    assert.notStrictEqual(port, 0)
    const serving = run.events.find((e) => e.event === "serving" && e.pid === first.pid)!
    assert.sameMembers(serving.registered, [`tcp:127.0.0.1:${port}`, "name:admin"])
    const inodes = [listeningInode(port)!, listeningInode(admin)!]

    writePlan(planFile, { listen: [{ host: "127.0.0.1", port }, { name: "admin", host: "127.0.0.1", port: 0 }] })
    const child = await upgradeFrom(run, first.pid)
    const ready = run.events.find((e) => e.event === "ready" && e.pid === child)!
    assert.deepStrictEqual(ready.listeners, [{ port }, { port: admin }])
    assert.deepStrictEqual([listeningInode(port), listeningInode(admin)], inodes)
    for (const inode of inodes) assert.isTrue(holdsSocket(child, inode))
  })

  it("hands over IPv6 and unix listeners through 20 chained upgrades with no fd growth", async () => {
    const dir = tempDir()
    const path = Path.join(dir, "chain.sock")
    const { planFile, run } = start({ listen: [{ host: "::1", port: 0 }, { path }] })
    const first = await run.waitFor((e) => e.event === "ready")
    const port: number = first.listeners[0].port
    writePlan(planFile, { listen: [{ host: "::1", port }, { path }] })

    let current = first.pid
    const counts: Array<number> = []
    for (let i = 0; i < 20; i++) {
      current = await upgradeFrom(run, current)
      counts.push(fdCount(current))
      assert.strictEqual(await askPid({ host: "::1", port }), current)
      assert.strictEqual(await askPid({ path }), current)
    }
    // One fd may come and go (the server's end of a connection the test just closed); a leak grows by generation.
    assert.isAtMost(Math.max(...counts) - Math.min(...counts), 1, `fd counts per generation: ${counts.join(", ")}`)
    assert.isAtMost(counts[19]!, counts[0]! + 1, `fd counts per generation: ${counts.join(", ")}`)
    const last = run.events.find((e) => e.event === "started" && e.pid === current)!
    assert.strictEqual(last.generation, 21)
  }, 180_000)
})
