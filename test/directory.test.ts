/**
 * DirectoryUpgrader: handover between processes that did not start each
 * other, through a directory, with real processes, sockets and SCM_RIGHTS.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import type { Plan } from "./fixtures/generation.js"
import { askPid, generations, hammer, holdsSocket, isAlive, listeningInode, tempDir } from "./helpers/fixture.js"

const { start } = generations()

/** Like `instance`, with extra environment. */
const instanceWith = async (plan: Plan, env: NodeJS.ProcessEnv) => {
  const { run } = start(plan, env)
  return run.waitFor((e) => e.event === "ready" || e.event === "failed")
}

/** An empty coordination directory, 0700 as the layer wants it. */
const coordination = () => {
  const dir = Path.join(tempDir(), "run")
  Fs.mkdirSync(dir, { mode: 0o700 })
  return dir
}

/** Starts an independent process on `dir`; resolves once it reports `event`. */
const instance = async (plan: Plan, event = "ready") => {
  const { run } = start(plan)
  const reached = await run.waitFor((e) => e.event === event || e.event === "failed")
  const started = run.events.find((e) => e.event === "started")
  return { run, reached, pid: reached.pid as number, hasParent: started?.hasParent as boolean | undefined }
}

const ownerPid = (dir: string) => Number(Fs.readFileSync(Path.join(dir, "owner.pid"), "utf8"))

/** Exactly `pid`, among `pids`, holds the listener on `port`. */
const soleHolder = (port: number, pids: ReadonlyArray<number>, pid: number) => {
  const inode = listeningInode(port)!
  assert.deepStrictEqual(pids.filter((p) => isAlive(p) && holdsSocket(p, inode)), [pid])
}

describe("DirectoryUpgrader", () => {
  it("hands the listener from one independently started process to another under load, nothing failed", async () => {
    const dir = coordination()
    const a = await instance({ listen: [{ host: "127.0.0.1", port: 0 }], directory: dir })
    assert.isFalse(a.hasParent)
    const port: number = a.reached.listeners[0].port
    const target = { host: "127.0.0.1", port }
    let b = 0
    const over = (async () => {
      const started = await instance({ listen: [target], directory: dir })
      b = started.pid
      assert.deepStrictEqual(started.run.events.find((e) => e.event === "started")!.inherited, [
        `tcp:127.0.0.1:${port}`
      ])
      await a.run.waitFor((e) => e.event === "exit" && e.reason === "upgraded")
      await a.run.ended()
      await started.run.waitFor((e) => e.event === "parent-gone")
    })()
    const load = await hammer(target, over)
    await over
    assert.deepStrictEqual(load.failures, [], "not one connection failed")
    assert.isAbove(load.byPid.get(a.pid) ?? 0, 0)
    assert.isAbove(load.byPid.get(b) ?? 0, 0)
    assert.strictEqual(await askPid(target), b)
    assert.strictEqual(ownerPid(dir), b)
    assert.sameMembers(Fs.readdirSync(dir), ["owner.sock", "owner.pid", "upgrade.lock"])
  })

  it("recovers from a stale owner: a dead process's socket file and pid", async () => {
    const dir = coordination()
    const a = await instance({ listen: [{ host: "127.0.0.1", port: 0 }], directory: dir })
    const port: number = a.reached.listeners[0].port
    process.kill(a.pid, "SIGKILL")
    await a.run.ended()
    assert.isTrue(Fs.existsSync(Path.join(dir, "owner.sock")), "the dead owner left its socket file")
    const b = await instance({ listen: [{ host: "127.0.0.1", port }], directory: dir })
    assert.strictEqual(b.reached.event, "ready")
    assert.isFalse(b.hasParent, "nobody handed anything over")
    assert.strictEqual(await askPid({ host: "127.0.0.1", port }), b.pid)
    assert.strictEqual(ownerPid(dir), b.pid)
  })

  it("refuses a directory others may write to, or that another user owns", async () => {
    const open = coordination()
    Fs.chmodSync(open, 0o777)
    const loose = await instance({ listen: [{ host: "127.0.0.1", port: 0 }], directory: open })
    assert.strictEqual(loose.reached.event, "failed")
    assert.strictEqual(loose.reached.tag, "DirectoryError")
    assert.strictEqual(loose.reached.reason, "Permissions")
    assert.include(loose.reached.message, "mode 777")
    assert.include(loose.reached.message, "chmod go-w")

    if (process.getuid?.() === 0) {
      const foreign = coordination()
      Fs.chownSync(foreign, 65534, 65534)
      const other = await instance({ listen: [{ host: "127.0.0.1", port: 0 }], directory: foreign })
      assert.strictEqual(other.reached.tag, "DirectoryError")
      assert.include(other.reached.message, "owned by uid 65534")
    }
  })

  it("fails with a typed NotSupported where the native addon cannot be loaded, and the rest still works", async () => {
    const dir = coordination()
    const without = await instanceWith({ listen: [{ host: "127.0.0.1", port: 0 }], directory: dir }, {
      EFFECT_TABLEFLIP_NATIVE: "0"
    })
    assert.strictEqual(without.event, "failed")
    assert.strictEqual(without.tag, "NotSupported")
    assert.include(without.message, "native addon")
    const plain = await instanceWith({ listen: [{ host: "127.0.0.1", port: 0 }] }, { EFFECT_TABLEFLIP_NATIVE: "0" })
    assert.strictEqual(plain.event, "ready")
  })

  it("a newcomer killed after it received the sockets leaves the old owner serving, and the next one takes over", async () => {
    const dir = coordination()
    const a = await instance({ listen: [{ host: "127.0.0.1", port: 0 }], directory: dir })
    const target = { host: "127.0.0.1", port: a.reached.listeners[0].port as number }
    const over = (async () => {
      const b = await instance({ listen: [target], directory: dir, mode: "unready" }, "serving")
      process.kill(b.pid, "SIGKILL")
      await b.run.ended()
    })()
    const load = await hammer(target, over)
    await over
    assert.deepStrictEqual(load.failures.filter((code) => code === "ECONNREFUSED"), [])
    assert.strictEqual(await askPid(target), a.pid)
    assert.strictEqual(ownerPid(dir), a.pid)
    const c = await instance({ listen: [target], directory: dir })
    await a.run.ended()
    assert.strictEqual(await askPid(target), c.pid, "the lock and the owner socket were free again")
  })

  it("an owner that goes away before it answers leaves the newcomer as the first owner", async () => {
    const dir = coordination()
    // An owner that accepts and closes without a word, as one dying at that moment would.
    const mute = Net.createServer((socket) => socket.destroy()).listen(Path.join(dir, "owner.sock"))
    await new Promise((resolve) => mute.once("listening", resolve))
    try {
      const b = await instance({ listen: [{ host: "127.0.0.1", port: 0 }], directory: dir })
      assert.strictEqual(b.reached.event, "ready")
      assert.isFalse(b.hasParent)
      assert.strictEqual(ownerPid(dir), b.pid)
      assert.strictEqual(await askPid({ host: "127.0.0.1", port: b.reached.listeners[0].port }), b.pid)
    } finally {
      mute.close()
    }
  })

  it("an old owner killed after it handed over leaves the newcomer as the one owner", async () => {
    const dir = coordination()
    const a = await instance({ listen: [{ host: "127.0.0.1", port: 0 }], directory: dir })
    const target = { host: "127.0.0.1", port: a.reached.listeners[0].port as number }
    let b = 0
    const over = (async () => {
      const started = await instance({ listen: [target], directory: dir, mode: "ready-on-usr1" }, "serving")
      b = started.pid
      process.kill(a.pid, "SIGKILL")
      await a.run.ended()
      process.kill(b, "SIGUSR1")
      await started.run.waitFor((e) => e.event === "ready")
    })()
    const load = await hammer(target, over)
    await over
    assert.deepStrictEqual(load.failures.filter((code) => code === "ECONNREFUSED"), [])
    soleHolder(target.port, [a.pid, b], b)
    assert.strictEqual(ownerPid(dir), b)
    const c = await instance({ listen: [target], directory: dir })
    assert.strictEqual(c.hasParent, true, "the newcomer owns the directory now and hands over in turn")
  })
})
