/**
 * systemd's notify protocol against a real unix datagram socket standing in
 * for systemd (test/fixtures/notify-socket.py, which reads each sender's pid
 * as systemd does).
 */
import { afterEach, assert, describe, it } from "@effect/vitest"
import * as ChildProcess from "node:child_process"
import { generations, socketPath, tempDir, upgradeFrom, within, writePlan } from "./helpers/fixture.js"

const { start } = generations()

interface Datagram {
  readonly sender: number
  readonly fields: Record<string, string>
}

const sockets: Array<ChildProcess.ChildProcess> = []
afterEach(() => {
  for (const socket of sockets.splice(0)) socket.kill("SIGKILL")
})

/** Binds a notify socket and collects what arrives on it. */
const fakeSystemd = async (options: { readonly mute?: boolean } = {}) => {
  const path = socketPath(tempDir(), "notify")
  const python = ChildProcess.spawn("python3", [
    "test/fixtures/notify-socket.py",
    path,
    ...(options.mute ? ["--mute"] : [])
  ], {
    stdio: ["ignore", "pipe", "inherit"]
  })
  sockets.push(python)
  const received: Array<Datagram> = []
  const waiters = new Set<() => void>()
  let buffer = ""
  await new Promise<void>((resolve) => {
    python.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      buffer += chunk
      let newline: number
      while ((newline = buffer.indexOf("\n")) !== -1) {
        const line = JSON.parse(buffer.slice(0, newline))
        buffer = buffer.slice(newline + 1)
        if (line.listening) resolve()
        else {
          const fields = Object.fromEntries(
            (line.message as string).split("\n").map((
              kv
            ) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)])
          )
          received.push({ sender: line.sender, fields })
        }
      }
      for (const waiter of waiters) waiter()
    })
  })
  const waitForCount = (n: number) =>
    new Promise<void>((resolve) => {
      const check = () => {
        if (received.length >= n) {
          waiters.delete(check)
          resolve()
        }
      }
      waiters.add(check)
      check()
    })
  return { path, received, waitForCount }
}

describe("systemd notify", () => {
  it("says READY, RELOADING, MAINPID and STOPPING in order, from the main pid, across a good and a failed upgrade", async () => {
    const systemd = await fakeSystemd()
    const { planFile, run } = start({ listen: [{ host: "127.0.0.1", port: 0 }] }, { NOTIFY_SOCKET: systemd.path })
    const first = await run.waitFor((e) => e.event === "ready")
    const listen = [{ host: "127.0.0.1", port: first.listeners[0].port }]

    writePlan(planFile, { listen })
    process.kill(first.pid, "SIGUSR2")
    const upgraded = await run.waitFor((e) => e.event === "upgraded")
    const second: number = upgraded.child
    await run.waitFor((e) => e.event === "parent-gone" && e.pid === second)

    writePlan(planFile, { listen, mode: "crash" })
    process.kill(second, "SIGUSR2")
    await run.waitFor((e) => e.event === "upgrade-failed")
    process.kill(second, "SIGINT")
    await run.waitFor((e) => e.event === "exit" && e.pid === second)
    await systemd.waitForCount(6)

    const got: Array<Record<string, string | number>> = systemd.received.map(({ fields, sender }) => ({
      sender,
      ...fields
    }))
    const usec = (i: number) => Number(got[i]!.MONOTONIC_USEC)
    assert.deepInclude(got[0], { sender: first.pid, READY: "1", MAINPID: String(first.pid) })
    assert.deepInclude(got[1], { sender: first.pid, RELOADING: "1" })
    assert.deepInclude(got[2], { sender: first.pid, MAINPID: String(second), READY: "1" })
    assert.deepInclude(got[3], { sender: second, RELOADING: "1" })
    assert.deepInclude(got[4], { sender: second, READY: "1" })
    assert.match(String(got[4]!.STATUS), /upgrade failed: .*exited with code 3/)
    assert.deepInclude(got[5], { sender: second, STOPPING: "1" })
    assert.isAbove(usec(3), usec(1), "MONOTONIC_USEC grows")
    assert.strictEqual(got.length, 6, "and nothing else")
  })

  it(
    "a notify socket nobody reads (its queue full) freezes nothing: 20 upgrades, a warning, and SIGTERM still works",
    async () => {
      const systemd = await fakeSystemd({ mute: true })
      const { planFile, run } = start({ listen: [{ host: "127.0.0.1", port: 0 }] }, { NOTIFY_SOCKET: systemd.path })
      const first = await within(run.waitFor((e) => e.event === "ready"), 30_000, "generation 1 ready")
      writePlan(planFile, { listen: [{ host: "127.0.0.1", port: first.listeners[0].port }] })
      // 41 messages into a queue of 10 (net.unix.max_dgram_qlen): a blocking send froze the 6th upgrade.
      let current: number = first.pid
      for (let i = 1; i <= 20; i++) current = await within(upgradeFrom(run, current), 30_000, `upgrade ${i}`)
      await within(run.waitForLine(/cannot notify systemd at .*EAGAIN.*queue is full/), 10_000, "the warning")
      process.kill(current, "SIGTERM")
      const ended = await within(
        run.waitFor((e) => e.event === "ended" && e.pid === current),
        15_000,
        `generation 21 (pid ${current}) ending on SIGTERM`
      )
      assert.isTrue(ended.ok)
      await within(run.ended(), 15_000, "every generation gone")
    },
    600_000
  )
})
