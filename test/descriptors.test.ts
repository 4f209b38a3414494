/**
 * Every kind of descriptor across upgrades: UDP, connected sockets, files and
 * FIFOs, servers made elsewhere, systemd socket activation, and many at once.
 */
import { assert, describe, it } from "@effect/vitest"
import * as ChildProcess from "node:child_process"
import * as Dgram from "node:dgram"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import {
  askPid,
  freePort,
  generations,
  holdsSocket,
  listeningInode,
  Run,
  tempDir,
  upgradeFrom,
  writePlan
} from "./helpers/fixture.js"
import type { Event } from "./helpers/fixture.js"

const { start, track } = generations()

const listen = (server: Net.Server): Promise<number> =>
  new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve((server.address() as Net.AddressInfo).port)))

describe("descriptors", () => {
  it("hands a UDP socket over with every datagram answered by one generation or the other", async () => {
    const { planFile, run } = start({
      listen: [],
      udp: [{ type: "udp4", host: "127.0.0.1", port: 0 }, { type: "udp6", host: "::1", port: 0 }]
    })
    const first = await run.waitFor((e) => e.event === "ready")
    const [v4, v6] = first.udp.map((u: { port: number }) => u.port) as [number, number]
    writePlan(planFile, {
      listen: [],
      udp: [{ type: "udp4", host: "127.0.0.1", port: v4 }, { type: "udp6", host: "::1", port: v6 }]
    })

    const client = Dgram.createSocket("udp4")
    await new Promise<void>((resolve) => client.bind(0, "127.0.0.1", resolve))
    const answers = new Map<number, number>()
    let waiting: (() => void) | undefined
    client.on("message", (message) => {
      const [seq, pid] = String(message).split(" ").map(Number) as [number, number]
      answers.set(seq, pid)
      waiting?.()
    })
    let sent = 0
    let sending = true
    const sender = (async () => {
      // Paced by the answers: at most 20 datagrams in flight, so no socket buffer ever overflows.
      while (sending || sent < 40) {
        while (sent - answers.size >= 20) await new Promise<void>((resolve) => (waiting = resolve))
        client.send(String(sent++), v4, "127.0.0.1")
        await new Promise((resolve) => setImmediate(resolve))
      }
    })()
    const child = await upgradeFrom(run, first.pid)
    sending = false
    await sender
    while (answers.size < sent) await new Promise<void>((resolve) => (waiting = resolve))
    client.close()

    const pids = new Set(answers.values())
    assert.strictEqual(answers.size, sent, "every datagram was answered")
    assert.isTrue(pids.has(first.pid) && pids.has(child), `answered by ${[...pids].join(", ")}`)

    const v6client = Dgram.createSocket("udp6")
    const reply = await new Promise<string>((resolve) => {
      v6client.on("message", (message) => resolve(String(message)))
      v6client.send("6", v6, "::1")
    })
    v6client.close()
    assert.strictEqual(reply, `6 ${child}`)
  })

  it("hands a connected socket over: the peer keeps its connection and every byte", async () => {
    const upstream = Net.createServer()
    const port = await listen(upstream)
    const peer = new Promise<Net.Socket>((resolve) => upstream.once("connection", resolve))
    const { run } = start({ listen: [], upstream: { port } })
    const first = await run.waitFor((e) => e.event === "ready")
    const socket = await peer
    socket.setEncoding("utf8")
    let ended = false
    socket.on("end", () => (ended = true))
    socket.on("error", () => (ended = true))
    const lines: Array<string> = []
    let buffered = ""
    let waiting: (() => void) | undefined
    socket.on("data", (chunk: string) => {
      buffered += chunk
      let newline: number
      while ((newline = buffered.indexOf("\n")) !== -1) {
        lines.push(buffered.slice(0, newline))
        buffered = buffered.slice(newline + 1)
      }
      waiting?.()
    })
    const ask = async (text: string): Promise<string> => {
      const before = lines.length
      socket.write(`${text}\n`)
      while (lines.length === before) await new Promise<void>((resolve) => (waiting = resolve))
      return lines[before]!
    }

    assert.strictEqual(await ask("before"), `pong ${first.pid} before`)
    // Lines keep going while the upgrade runs; each is answered exactly once, by whoever holds the socket.
    let asking = true
    const during: Array<string> = []
    const talker = (async () => {
      for (let i = 0; asking; i++) during.push(await ask(`during-${i}`))
    })()
    const child = await upgradeFrom(run, first.pid)
    asking = false
    await talker
    assert.strictEqual(await ask("after"), `pong ${child} after`)
    assert.isFalse(ended, "the peer never saw the connection end")
    during.forEach((line, i) => assert.match(line, new RegExp(`^pong (${first.pid}|${child}) during-${i}$`)))
    assert.isUndefined(run.events.find((e) => e.event === "upstream-end" || e.event === "upstream-error"))
    socket.destroy()
    upstream.close()
  })

  it("hands files and FIFOs over by name, in registration order, sharing the append offset", async () => {
    const dir = tempDir()
    const log = Path.join(dir, "app.log")
    const fifo = Path.join(dir, "events.fifo")
    Fs.writeFileSync(log, "start\n")
    ChildProcess.execFileSync("mkfifo", [fifo])
    // The reader end, opened first so that the app's open for writing does not block.
    const reader = Fs.openSync(fifo, Fs.constants.O_RDONLY | Fs.constants.O_NONBLOCK)
    const extra = Path.join(dir, "extra.log")
    Fs.writeFileSync(extra, "")
    const files = [{ name: "log", path: log }, { name: "events", path: fifo }, { name: "extra", path: extra }]
    const { planFile, run } = start({ listen: [], files })
    const first = await run.waitFor((e) => e.event === "ready")
    writePlan(planFile, { listen: [], files })
    const second = await upgradeFrom(run, first.pid)
    const third = await upgradeFrom(run, second)

    const ready = run.events.find((e) => e.event === "ready" && e.pid === third)!
    assert.deepStrictEqual(ready.files, ["log", "events", "extra"], "the order the first generation registered")
    assert.strictEqual(Fs.readFileSync(log, "utf8"), `start\n${first.pid}\n${second}\n${third}\n`)
    const fromFifo = Buffer.alloc(256)
    const n = Fs.readSync(reader, fromFifo)
    assert.strictEqual(fromFifo.subarray(0, n).toString(), `${first.pid}\n${second}\n${third}\n`)
    Fs.closeSync(reader)
  })

  it("hands over servers the app bound itself and registered afterwards", async () => {
    const free = await freePort()
    const { planFile, run } = start({ listen: [], external: [{ host: "127.0.0.1", port: free }] })
    const first = await run.waitFor((e) => e.event === "ready")
    assert.deepStrictEqual(
      run.events.find((e) => e.event === "serving")!.registered,
      [`tcp:127.0.0.1:${free}`]
    )
    const inode = listeningInode(free)!
    writePlan(planFile, { listen: [], external: [{ host: "127.0.0.1", port: free }] })
    const child = await upgradeFrom(run, first.pid)
    assert.strictEqual(await askPid({ host: "127.0.0.1", port: free }), child)
    assert.isTrue(holdsSocket(child, inode), "the same socket, adopted")
  })

  // Through the addon (this process's own fds), and through /proc/net without it.
  it.each([["the addon", {}], ["/proc/net", { EFFECT_TABLEFLIP_NATIVE: "0" }]] as const)(
    "refuses to upgrade past a listener that bypassed the registry, and says what to do (%s)",
    async (_, env) => {
      const free = await freePort()
      const { run } = start({ listen: [{ host: "127.0.0.1", port: 0 }], stray: { host: "127.0.0.1", port: free } }, env)
      const first = await run.waitFor((e) => e.event === "ready")
      process.kill(first.pid, "SIGUSR2")
      const failed = await run.waitFor((e) => e.event === "upgrade-failed")
      assert.strictEqual(failed.tag, "UnregisteredListener")
      assert.deepStrictEqual(failed.addresses, [`tcp:127.0.0.1:${free}`])
      assert.match(failed.message, /Fds\.listen or register them with Fds\.addListener/)
      assert.isUndefined(run.events.find((e) => e.event === "started" && e.generation === 2), "nothing was started")
    }
  )

  it("names a unix listener that bypassed the registry by its whole path, spaces and all", async () => {
    const path = Path.join(tempDir(), "a path  with spaces .sock")
    const { run } = start({ listen: [{ host: "127.0.0.1", port: 0 }], strayPath: path })
    const first = await run.waitFor((e) => e.event === "ready")
    process.kill(first.pid, "SIGUSR2")
    const failed = await run.waitFor((e) => e.event === "upgrade-failed")
    assert.strictEqual(failed.tag, "UnregisteredListener")
    assert.deepStrictEqual(failed.addresses, [`unix:${path}`])
  })

  it("takes systemd's sockets (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES) by name and by address, and passes them on", async () => {
    const web = Net.createServer()
    const webPort = await listen(web)
    const admin = Net.createServer()
    const adminPort = await listen(admin)
    const dir = tempDir()
    const planFile = Path.join(dir, "plan.json")
    const plan = {
      listen: [{ name: "web", host: "127.0.0.1", port: 1 }, { host: "127.0.0.1", port: adminPort }],
      probeGrandchild: true
    }
    writePlan(planFile, plan)
    // As systemd does: the sockets at fds 3 and 4, LISTEN_PID naming the process that execs the service.
    const fd = (server: Net.Server) => (server as unknown as { _handle: { fd: number } })._handle.fd
    const run = track(
      new Run("test/fixtures/generation.ts", ["--plan", planFile], {
        env: { LISTEN_FDS: "2", LISTEN_FDNAMES: "web:admin" },
        extraStdio: [fd(web), fd(admin)],
        launcher: ["/bin/sh", "-c", "LISTEN_PID=$$ exec \"$0\" \"$@\""]
      })
    )
    const first = await run.waitFor((e) => e.event === "ready")
    const started = run.events.find((e) => e.event === "started" && e.pid === first.pid)!
    assert.sameMembers(started.inherited, ["name:web", "name:admin"])
    const inodes = [listeningInode(webPort)!, listeningInode(adminPort)!]
    // The launcher's copies go away; the service holds the sockets now.
    web.close()
    admin.close()
    assert.strictEqual(await askPid({ host: "127.0.0.1", port: webPort }), first.pid)
    assert.strictEqual(await askPid({ host: "127.0.0.1", port: adminPort }), first.pid)
    const probe = run.events.find((e) => e.event === "grandchild" && e.pid === first.pid)!
    assert.strictEqual(probe.env, "", "no LISTEN_* variable reaches the app's own children")

    const child = await upgradeFrom(run, first.pid)
    assert.strictEqual(await askPid({ host: "127.0.0.1", port: webPort }), child)
    assert.strictEqual(await askPid({ host: "127.0.0.1", port: adminPort }), child)
    for (const inode of inodes) assert.isTrue(holdsSocket(child, inode))
    const childProbe: Event = await run.waitFor((e) => e.event === "grandchild" && e.pid === child)
    assert.strictEqual(childProbe.env, "")
  })

  it("hands 50 listeners through 10 chained upgrades with no fd growth, and none reaches a grandchild", async () => {
    const listen50 = Array.from({ length: 50 }, () => ({ host: "127.0.0.1", port: 0 }))
    const { planFile, run } = start({ listen: listen50 })
    const first = await run.waitFor((e) => e.event === "ready")
    const ports: Array<number> = first.listeners.map((l: { port: number }) => l.port)
    writePlan(planFile, { listen: ports.map((port) => ({ host: "127.0.0.1", port })), probeGrandchild: true })
    const inodes = ports.map((port) => listeningInode(port)!)

    let current = first.pid
    const counts: Array<number> = []
    for (let i = 0; i < 10; i++) {
      current = await upgradeFrom(run, current)
      counts.push(Fs.readdirSync(`/proc/${current}/fd`).length)
    }
    assert.isAtMost(Math.max(...counts) - Math.min(...counts), 1, `fd counts per generation: ${counts.join(", ")}`)
    for (const port of [ports[0]!, ports[49]!]) assert.strictEqual(await askPid({ host: "127.0.0.1", port }), current)
    for (const inode of inodes) assert.isTrue(holdsSocket(current, inode))

    const probe = run.events.find((e) => e.event === "grandchild" && e.pid === current)!
    const sockets = new Set(inodes.map((inode) => `socket:[${inode}]`))
    for (const [fd, target] of probe.fds as Array<[string, string]>) {
      assert.isFalse(sockets.has(target), `the grandchild holds listener ${target} at fd ${fd}`)
      assert.isFalse(
        target.startsWith("socket:") && Number(fd) > 2,
        `the grandchild holds socket ${target} at fd ${fd}`
      )
    }
  }, 180_000)
})
