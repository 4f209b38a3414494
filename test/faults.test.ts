/**
 * Fault injection with real processes: a generation killed at every step of
 * an upgrade, a new one that dies after `ready`, and a process out of fds.
 * After each fault exactly one generation serves, no connection is refused,
 * the PID file names the survivor, and the survivor upgrades again.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Path from "node:path"
import type { Plan } from "./fixtures/generation.js"
import {
  askPid,
  atSpawnPreload,
  type Event,
  exists,
  generations,
  hammer,
  holdsSocket,
  isAlive,
  listeningInode,
  type Run,
  tempDir,
  upgradeFrom,
  within,
  writePlan
} from "./helpers/fixture.js"

const { start } = generations()

/** A first generation on a loopback port with a PID file; `next` writes the plan its successor reads. */
const serving = async (plan: Partial<Plan> = {}) => {
  const pidFile = Path.join(tempDir(), "app.pid")
  const { planFile, run } = start({ listen: [{ host: "127.0.0.1", port: 0 }], pidFile, ...plan })
  const first = await run.waitFor((e) => e.event === "ready")
  const target = { host: "127.0.0.1", port: first.listeners[0].port as number }
  const next = (successor: Partial<Plan> = {}) => writePlan(planFile, { listen: [target], pidFile, ...successor })
  return { run, first: first.pid as number, target, pidFile, next }
}

type Serving = Awaited<ReturnType<typeof serving>>

/** Exactly `pid` serves the listener and is named by the PID file; it then upgrades again. */
const assertSurvivor = async (service: Serving, pid: number) => {
  const inode = listeningInode(service.target.port)
  assert.isDefined(inode, "the listening socket still exists")
  const holders = service.run.pids().filter((p) => isAlive(p) && holdsSocket(p, inode!))
  assert.deepStrictEqual(holders, [pid], "exactly one generation holds the listener")
  assert.strictEqual(await askPid(service.target), pid)
  assert.strictEqual(Fs.readFileSync(service.pidFile, "utf8"), `${pid}\n`, "the PID file names the survivor")
  service.next()
  const successor = await upgradeFrom(service.run, pid)
  assert.strictEqual(await askPid(service.target), successor, "the survivor upgraded again")
}

const refused = (failures: ReadonlyArray<string>) => failures.filter((code) => code === "ECONNREFUSED")

/** Upgrades `from`, runs `fault` (which resolves once the fault is over) under load, and returns the load's result. */
const underLoad = async (service: Pick<Serving, "target">, fault: () => Promise<unknown>) => {
  const over = fault()
  const load = await hammer(service.target, over)
  await over
  assert.isAbove(load.ok, 0, "the load got answers")
  assert.deepStrictEqual(refused(load.failures), [], "no connection refused")
  return load
}

// The event carries the error's own fields, so its `pid` is the new generation's.
const failedUpgrade = (run: Run) => run.waitFor((e) => e.event === "upgrade-failed")

describe("SIGKILL of the new generation", () => {
  const phases: ReadonlyArray<readonly [string, NonNullable<Plan["mode"]>, (e: Event) => boolean]> = [
    ["before it reads the handover", "stall-before-handover", (e) => e.event === "booting"],
    ["after it claimed its listeners", "unready", (e) => e.event === "serving" && e.generation === 2],
    // The old generation must take the PID file back from the dead one.
    ["just before ready, after it wrote the PID file", "pidfile-stall", (e) => e.event === "pidfile-written"]
  ]
  for (const [phase, mode, reached] of phases) {
    it(phase, async () => {
      const service = await serving()
      service.next({ mode })
      await underLoad(service, async () => {
        process.kill(service.first, "SIGUSR2")
        const child = await service.run.waitFor(reached)
        process.kill(child.pid, "SIGKILL")
        const failed = await failedUpgrade(service.run)
        assert.strictEqual(failed.tag, "ChildExited")
        assert.strictEqual(failed.signal, "SIGKILL")
        assert.strictEqual(failed.pid, child.pid)
        assert.isFalse(exists(child.pid), "reaped, no zombie")
      })
      await assertSurvivor(service, service.first)
    })
  }

  it("just after ready, during probation: rolled back, the old generation never stopped serving", async () => {
    const service = await serving({ probation: "3 seconds" })
    service.next({ probation: "3 seconds" })
    const load = await underLoad(service, async () => {
      process.kill(service.first, "SIGUSR2")
      const child = await service.run.waitFor((e) => e.event === "ready" && e.generation === 2)
      process.kill(child.pid, "SIGKILL")
      const failed = await failedUpgrade(service.run)
      assert.strictEqual(failed.tag, "RolledBack")
      assert.strictEqual(failed.signal, "SIGKILL")
      assert.strictEqual(failed.pid, child.pid)
      assert.include(failed.message, `pid ${child.pid}`)
      assert.isFalse(exists(child.pid), "reaped, no zombie")
    })
    assert.isAbove(load.byPid.get(service.first) ?? 0, 0)
    await assertSurvivor(service, service.first)
  })
})

describe("SIGKILL of the old generation", () => {
  it("while the new one is pending: the new one serves on and becomes ready alone", async () => {
    const service = await serving()
    service.next({ mode: "ready-on-usr1" })
    let child = 0
    await underLoad(service, async () => {
      process.kill(service.first, "SIGUSR2")
      child = (await service.run.waitFor((e) => e.event === "serving" && e.generation === 2)).pid
      process.kill(service.first, "SIGKILL")
      await service.run.waitFor((e) => e.event === "parent-gone" && e.pid === child)
      // The new generation accepted all along; now it finishes starting.
      process.kill(child, "SIGUSR1")
      await service.run.waitFor((e) => e.event === "ready" && e.pid === child)
    })
    await assertSurvivor(service, child)
  })

  it("just after the new one is ready", async () => {
    const service = await serving({ linger: true })
    service.next()
    let child = 0
    await underLoad(service, async () => {
      process.kill(service.first, "SIGUSR2")
      child = (await service.run.waitFor((e) => e.event === "upgraded")).child
      process.kill(service.first, "SIGKILL")
      await service.run.waitFor((e) => e.event === "parent-gone" && e.pid === child)
    })
    await assertSurvivor(service, child)
  })
})

describe("a new generation that dies within a second after ready", () => {
  it("without probation: the draining old generation cannot take the listener back, and says so", async () => {
    const service = await serving({ drainFor: 30_000 })
    service.next({ crashAfterReady: 200 })
    process.kill(service.first, "SIGUSR2")
    const upgraded = await service.run.waitFor((e) => e.event === "upgraded")
    await service.run.waitFor((e) => e.event === "draining" && e.pid === service.first)
    await service.run.waitForLine(new RegExp(`new generation \\(pid ${upgraded.child}\\) exited with code 7 after`))
    assert.isTrue(isAlive(service.first), "the old generation still drains")
    // The documented cost of running without probation: nobody holds the listener any more.
    const error = await askPid(service.target).then(() => undefined, (error: NodeJS.ErrnoException) => error.code)
    assert.strictEqual(error, "ECONNREFUSED")
  })

  it("with probation: rolled back under load with not one failed request", async () => {
    const service = await serving({ probation: "3 seconds" })
    service.next({ probation: "3 seconds", crashAfterReady: 200 })
    const load = await underLoad(service, async () => {
      process.kill(service.first, "SIGUSR2")
      const failed = await failedUpgrade(service.run)
      assert.strictEqual(failed.tag, "RolledBack")
      assert.strictEqual(failed.code, 7)
      assert.include(failed.message, "rolled back")
    })
    // The new generation answered its connections within the tick it accepted them, so its
    // exit cut none: not one request failed, of any kind.
    assert.deepStrictEqual(load.failures, [])
    assert.isAbove(load.byPid.size, 1, "both generations served during the probation")
    await assertSurvivor(service, service.first)
  })
})

describe("resource exhaustion", () => {
  it("fails with a typed SpawnError naming EMFILE when the process is out of fds, and keeps serving", async () => {
    const service = await serving({ hoardFds: true })
    const hoarded = await service.run.waitFor((e) => e.event === "hoarded")
    assert.strictEqual(hoarded.code, "EMFILE")
    service.next()
    process.kill(service.first, "SIGUSR2")
    const failed = await failedUpgrade(service.run)
    assert.strictEqual(failed.tag, "SpawnError")
    assert.include(failed.message, "EMFILE")
    // The fixture lets its hoard go once the upgrade has failed.
    await assertSurvivor(service, service.first)
  })
})

describe("a new generation killed or stopped the instant it is spawned", () => {
  // Node holds back every message after the first socket handle until the child acknowledges
  // that handle; a child that never runs its event loop never does. These need two messages:
  // two listeners, or one listener and a State.
  const loopback = { host: "127.0.0.1", port: 0 } as const

  /** A first generation preloaded with at-spawn.cjs; `next` writes its successor's plan. */
  const preloaded = async (plan: Partial<Plan>) => {
    const { planFile, run } = start({ listen: [loopback, loopback], ...plan }, atSpawnPreload())
    const first = await within(run.waitFor((e) => e.event === "ready"), 30_000, "the first generation is ready")
    const targets = (first.listeners as Array<{ port: number }>).map(({ port }) => ({ host: "127.0.0.1", port }))
    const next = (successor: Partial<Plan> = {}) => writePlan(planFile, { ...plan, listen: targets, ...successor })
    return { run, first: first.pid as number, targets, next }
  }

  /** Upgrades again, to a successor that serves every listener. */
  const upgradesAgain = async (service: Awaited<ReturnType<typeof preloaded>>) => {
    service.next()
    const successor = await within(upgradeFrom(service.run, service.first), 60_000, "the next upgrade")
    for (const target of service.targets) assert.strictEqual(await askPid(target), successor)
    return successor
  }

  const cases: ReadonlyArray<readonly [string, Partial<Plan>]> = [
    ["two listeners", {}],
    ["one listener and a State", { listen: [loopback], state: "v1" }]
  ]
  for (const [name, plan] of cases) {
    it(`SIGKILL, ${name}: ChildExited at once, the old generation serves on and upgrades again`, async () => {
      const service = await preloaded(plan)
      service.next({ atSpawn: "SIGKILL" })
      let failed: Event | undefined
      await underLoad({ target: service.targets[0]! }, async () => {
        process.kill(service.first, "SIGUSR2")
        // The upgrade timeout is 20 s: anything but an immediate ChildExited is the wedge.
        failed = await within(failedUpgrade(service.run), 15_000, "the upgrade's outcome")
      })
      const spawned = service.run.events.find((e) => e.event === "at-spawn")!
      assert.isDefined(spawned, "the new generation reached the preload")
      assert.strictEqual(failed!.tag, "ChildExited", failed!.message)
      assert.strictEqual(failed!.signal, "SIGKILL")
      assert.strictEqual(failed!.pid, spawned.pid)
      assert.isFalse(exists(spawned.pid), "reaped, no zombie")
      for (const target of service.targets) assert.strictEqual(await askPid(target), service.first)
      const successor = await upgradesAgain(service)
      if (plan.state !== undefined) {
        const state = await service.run.waitFor((e) => e.event === "state" && e.pid === successor)
        assert.deepStrictEqual(state.pids, [service.first], "the state reached the next generation")
      }
    })
  }

  it("SIGSTOP: killed with SIGKILL and reaped at the timeout; the old generation upgrades again", async () => {
    const service = await preloaded({ upgradeTimeout: "10 seconds" })
    service.next({ atSpawn: "SIGSTOP" })
    const started = Date.now()
    process.kill(service.first, "SIGUSR2")
    const failed = await within(failedUpgrade(service.run), 40_000, "the upgrade's outcome")
    const elapsed = Date.now() - started
    const spawned = service.run.events.find((e) => e.event === "at-spawn")!
    assert.strictEqual(failed.tag, "UpgradeTimeout", failed.message)
    assert.strictEqual(failed.pid, spawned.pid)
    assert.isAtLeast(elapsed, 10_000)
    assert.isFalse(exists(spawned.pid), "killed and reaped, no zombie")
    for (const target of service.targets) assert.strictEqual(await askPid(target), service.first)
    await upgradesAgain(service)
  }, 120_000)
})
