/**
 * The upgrade lifecycle with real parent and child processes.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Path from "node:path"
import type { Plan } from "./fixtures/generation.js"
import {
  askPid,
  exists,
  generations,
  hammer,
  holdsSocket,
  listeningInode,
  tempDir,
  writePlan
} from "./helpers/fixture.js"

const { start } = generations()

const loopback = { host: "127.0.0.1", port: 0 } as const

describe("upgrade", () => {
  it("hands a listener over with no refused or reset connection, served by both generations", async () => {
    const { planFile, run } = start({ listen: [loopback] })
    const first = await run.waitFor((e) => e.event === "ready")
    const port: number = first.listeners[0].port
    writePlan(planFile, { listen: [{ host: "127.0.0.1", port }] })
    const inode = listeningInode(port)!

    const upgrade = (async () => {
      process.kill(first.pid, "SIGUSR2")
      const upgraded = await run.waitFor((e) => e.event === "upgraded")
      await run.waitFor((e) => e.event === "parent-gone" && e.pid === upgraded.child)
      return upgraded.child as number
    })()
    const load = await hammer({ host: "127.0.0.1", port }, upgrade)
    const child = await upgrade
    const after = await Promise.all(Array.from({ length: 20 }, () => askPid({ host: "127.0.0.1", port })))

    assert.deepStrictEqual(load.failures, [])
    assert.isTrue((load.byPid.get(first.pid) ?? 0) > 0, "the old generation served during the upgrade")
    assert.deepStrictEqual(new Set(after), new Set([child]))
    // The very same socket: the kernel's listening inode did not change and the child holds it.
    assert.strictEqual(listeningInode(port), inode)
    assert.isTrue(holdsSocket(child, inode))
  })

  it("keeps serving when the new generation crashes before ready, and can upgrade again", async () => {
    const dir = tempDir()
    const path = Path.join(dir, "s.sock")
    const { planFile, run } = start({ listen: [loopback, { path }] })
    const first = await run.waitFor((e) => e.event === "ready")
    const port: number = first.listeners[0].port
    const plan: Plan = { listen: [{ host: "127.0.0.1", port }, { path }] }
    writePlan(planFile, { ...plan, mode: "crash" })

    process.kill(first.pid, "SIGUSR2")
    const failed = await run.waitFor((e) => e.event === "upgrade-failed")
    assert.strictEqual(failed.tag, "ChildExited")
    assert.strictEqual(failed.code, 3)
    assert.strictEqual(failed.signal, null)
    assert.match(failed.message, /exited with code 3/)
    assert.isFalse(exists(failed.pid), "the crashed child was reaped")
    assert.strictEqual(await askPid({ host: "127.0.0.1", port }), first.pid)
    assert.strictEqual(await askPid({ path }), first.pid, "the unix socket path was left alone")

    writePlan(planFile, plan)
    process.kill(first.pid, "SIGUSR2")
    const upgraded = await run.waitFor((e) => e.event === "upgraded")
    await run.waitFor((e) => e.event === "parent-gone" && e.pid === upgraded.child)
    assert.strictEqual(await askPid({ path }), upgraded.child)
  })

  it("reports a clean exit before ready with code 0", async () => {
    const { planFile, run } = start({ listen: [loopback] })
    const first = await run.waitFor((e) => e.event === "ready")
    writePlan(planFile, { listen: [{ host: "127.0.0.1", port: first.listeners[0].port }], mode: "exit0" })
    process.kill(first.pid, "SIGUSR2")
    const failed = await run.waitFor((e) => e.event === "upgrade-failed")
    assert.strictEqual(failed.tag, "ChildExited")
    assert.strictEqual(failed.code, 0)
    assert.strictEqual(await askPid({ host: "127.0.0.1", port: first.listeners[0].port }), first.pid)
  })

  it("kills and reaps a new generation that hangs past the timeout", async () => {
    const { planFile, run } = start({ listen: [loopback], upgradeTimeout: "1 second" })
    const first = await run.waitFor((e) => e.event === "ready")
    writePlan(planFile, { listen: [{ host: "127.0.0.1", port: first.listeners[0].port }], mode: "hang" })
    process.kill(first.pid, "SIGUSR2")
    const failed = await run.waitFor((e) => e.event === "upgrade-failed")
    assert.strictEqual(failed.tag, "UpgradeTimeout")
    assert.match(failed.message, new RegExp(`pid ${failed.pid} was not ready within 1s`))
    // On a busy machine the child may not even have reported that it started before it was killed.
    const child = run.events.find((e) => e.event === "started" && e.generation === 2)
    if (child !== undefined) assert.strictEqual(child.pid, failed.pid)
    assert.isFalse(exists(failed.pid), "killed and reaped: no zombie left")
    assert.strictEqual(await askPid({ host: "127.0.0.1", port: first.listeners[0].port }), first.pid)
  })

  it("takes its timeout and PID file from the environment through Config", async () => {
    const pidFile = Path.join(tempDir(), "env.pid")
    const { planFile, run } = start({ listen: [loopback], fromEnv: true }, {
      TABLEFLIP_PID_FILE: pidFile,
      TABLEFLIP_UPGRADE_TIMEOUT: "1 second"
    })
    const first = await run.waitFor((e) => e.event === "ready")
    assert.strictEqual(Fs.readFileSync(pidFile, "utf8"), `${first.pid}\n`)
    writePlan(planFile, { listen: [{ host: "127.0.0.1", port: first.listeners[0].port }], fromEnv: true, mode: "hang" })
    process.kill(first.pid, "SIGUSR2")
    const failed = await run.waitFor((e) => e.event === "upgrade-failed")
    assert.strictEqual(failed.tag, "UpgradeTimeout")
    assert.match(failed.message, /not ready within 1s/)
  })

  it("refuses a concurrent upgrade, and stop kills the pending new generation", async () => {
    const { planFile, run } = start({ listen: [loopback] })
    const first = await run.waitFor((e) => e.event === "ready")
    writePlan(planFile, { listen: [{ host: "127.0.0.1", port: first.listeners[0].port }], mode: "hang" })
    process.kill(first.pid, "SIGUSR2")
    const child = await run.waitFor((e) => e.event === "started" && e.generation === 2)

    process.kill(first.pid, "SIGUSR2")
    const concurrent = await run.waitFor((e) => e.event === "upgrade-failed")
    assert.strictEqual(concurrent.tag, "UpgradeInProgress")
    assert.strictEqual(concurrent.childPid, child.pid)

    process.kill(first.pid, "SIGINT")
    const stopped = await run.waitFor((e) => e.event === "upgrade-failed" && e.tag === "Stopped")
    assert.strictEqual(stopped.childPid, child.pid)
    const exit = await run.waitFor((e) => e.event === "exit")
    assert.strictEqual(exit.reason, "stopped")
    assert.isFalse(exists(child.pid), "the pending child was killed and reaped")
    assert.strictEqual(await run.exited(), 0)
  })

  it("refuses to upgrade before ready", async () => {
    const { run } = start({ listen: [loopback], mode: "unready" })
    const serving = await run.waitFor((e) => e.event === "serving")
    process.kill(serving.pid, "SIGUSR2")
    const failed = await run.waitFor((e) => e.event === "upgrade-failed")
    assert.strictEqual(failed.tag, "NotReady")
    assert.isUndefined(run.events.find((e) => e.event === "started" && e.generation === 2))
  })

  it("refuses to upgrade a new generation while its parent still runs", async () => {
    const { planFile, run } = start({ listen: [loopback], linger: true })
    const first = await run.waitFor((e) => e.event === "ready")
    writePlan(planFile, { listen: [{ host: "127.0.0.1", port: first.listeners[0].port }], linger: true })
    process.kill(first.pid, "SIGUSR2")
    const upgraded = await run.waitFor((e) => e.event === "upgraded")
    await run.waitFor((e) => e.event === "ready" && e.pid === upgraded.child)

    process.kill(upgraded.child, "SIGUSR2")
    const failed = await run.waitFor((e) => e.event === "upgrade-failed")
    assert.strictEqual(failed.tag, "ParentNotExited")
    assert.strictEqual(failed.parentPid, first.pid)

    process.kill(first.pid, "SIGUSR2")
    const again = await run.waitFor((e) => e.event === "upgrade-failed" && e.pid === first.pid)
    assert.strictEqual(again.tag, "AlreadyUpgraded", "a generation that handed over cannot upgrade twice")
    assert.strictEqual(again.childPid, upgraded.child)

    process.kill(first.pid, "SIGTERM")
    await run.waitFor((e) => e.event === "parent-gone" && e.pid === upgraded.child)
    process.kill(upgraded.child, "SIGUSR2")
    const third = await run.waitFor((e) => e.event === "upgraded" && e.pid === upgraded.child)
    assert.notStrictEqual(third.child, upgraded.child)
  })

  it("upgrades on SIGHUP through the signal layer", async () => {
    const { planFile, run } = start({ listen: [loopback] })
    const first = await run.waitFor((e) => e.event === "ready")
    writePlan(planFile, { listen: [{ host: "127.0.0.1", port: first.listeners[0].port }] })
    process.kill(first.pid, "SIGHUP")
    const exit = await run.waitFor((e) => e.event === "exit" && e.pid === first.pid)
    assert.strictEqual(exit.reason, "upgraded")
    const second = await run.waitFor((e) => e.event === "ready" && e.generation === 2)
    await run.waitFor((e) => e.event === "parent-gone" && e.pid === second.pid)
    assert.strictEqual(await askPid({ host: "127.0.0.1", port: first.listeners[0].port }), second.pid)
    assert.strictEqual(await run.exited(), 0, "the old generation exited cleanly")
  })
})

describe("hygiene", () => {
  it("keeps the handover fds and environment out of processes the new generation spawns", async () => {
    const { planFile, run } = start({ listen: [loopback] })
    const first = await run.waitFor((e) => e.event === "ready")
    const port: number = first.listeners[0].port
    writePlan(planFile, { listen: [{ host: "127.0.0.1", port }], probeGrandchild: true })
    process.kill(first.pid, "SIGUSR2")
    const probe = await run.waitFor((e) => e.event === "grandchild" && e.pid !== first.pid)
    assert.strictEqual(probe.env, "", "no handover variable reaches the grandchild")
    const fds: Array<[string, string]> = probe.fds
    assert.includeMembers(fds.map(([fd]) => fd), ["0", "1", "2"], "the probe read the shell's fd table")
    const inode = listeningInode(port)!
    for (const [fd, target] of fds) {
      assert.notStrictEqual(target, `socket:[${inode}]`, `fd ${fd} is the listener`)
      assert.isFalse(Number(fd) >= 3 && Number(fd) <= 16, `fd ${fd} (${target}) leaked from the handover layout`)
    }
  })
})

describe("PID file", () => {
  it("names the serving generation, mode 0644, and is never seen empty or partial", async () => {
    const dir = tempDir()
    const pidFile = Path.join(dir, "app.pid")
    const { planFile, run } = start({ listen: [loopback], pidFile })
    const first = await run.waitFor((e) => e.event === "ready")
    assert.strictEqual(Fs.readFileSync(pidFile, "utf8"), `${first.pid}\n`)
    assert.strictEqual(Fs.statSync(pidFile).mode & 0o777, 0o644)
    writePlan(planFile, { listen: [{ host: "127.0.0.1", port: first.listeners[0].port }], pidFile })

    let reading = true
    const seen = new Set<string>()
    const reader = (async () => {
      while (reading) {
        seen.add(Fs.readFileSync(pidFile, "utf8"))
        await new Promise((resolve) => setImmediate(resolve))
      }
    })()
    let current = first.pid
    for (let i = 0; i < 5; i++) {
      process.kill(current, "SIGUSR2")
      const upgraded = await run.waitFor((e) => e.event === "upgraded" && e.pid === current)
      assert.strictEqual(
        Fs.readFileSync(pidFile, "utf8"),
        `${upgraded.child}\n`,
        "written before the parent hears ready"
      )
      await run.waitFor((e) => e.event === "parent-gone" && e.pid === upgraded.child)
      current = upgraded.child
    }
    reading = false
    await reader
    for (const text of seen) assert.match(text, /^\d+\n$/)
    assert.deepStrictEqual(
      Fs.readdirSync(dir).sort(),
      ["app.pid", "app.pid.upgrade.json", "app.start"],
      "no temporary file left behind"
    )
  })
})
