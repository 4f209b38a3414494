/**
 * DirectoryUpgrader: handover between processes that did not start each
 * other, through a directory, with real processes, sockets and SCM_RIGHTS.
 */
import { afterEach, assert, describe, it } from "@effect/vitest"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import type { Plan } from "./fixtures/generation.js"
import {
  askPid,
  generations,
  hammer,
  holdsSocket,
  isAlive,
  listeningInode,
  tempDir,
  within
} from "./helpers/fixture.js"

const { start } = generations()

/** Helper processes a test started (stand-ins for other processes), killed by pid after it. */
const helpers: Array<ChildProcess.ChildProcess> = []
afterEach(() => {
  for (const helper of helpers.splice(0)) helper.kill("SIGKILL")
})

/** Starts a helper process; resolves once it prints its first line (its readiness). */
const helper = (command: string, args: ReadonlyArray<string>, options: ChildProcess.SpawnOptions = {}) => {
  const child = ChildProcess.spawn(command, args, { ...options, stdio: ["ignore", "pipe", "inherit"] })
  helpers.push(child)
  return new Promise<ChildProcess.ChildProcess>((resolve, reject) => {
    child.once("error", reject)
    child.stdout!.setEncoding("utf8").once("data", () => resolve(child))
  })
}

/** A process's start time, field 22 of /proc/<pid>/stat, as the owner records it in owner.start. */
const startTime = (pid: number) => {
  const stat = Fs.readFileSync(`/proc/${pid}/stat`, "utf8")
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]!
}

/** Writes the owner records by hand, as a crashed owner, pid reuse or another user would leave them. */
const recordOwner = (dir: string, pid: number, start: string) => {
  Fs.writeFileSync(Path.join(dir, "owner.pid"), `${pid}\n`)
  Fs.writeFileSync(Path.join(dir, "owner.start"), `${pid} ${start}\n`)
}

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
    assert.sameMembers(Fs.readdirSync(dir), ["owner.sock", "owner.pid", "owner.start", "upgrade.lock"])
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

  it(
    "a pid in owner.pid that is not the owner (reused after a crash, another user's) does not hold a newcomer back",
    async () => {
      const dir = coordination()
      const a = await instance({ listen: [{ host: "127.0.0.1", port: 0 }], directory: dir })
      const target = { host: "127.0.0.1", port: a.reached.listeners[0].port as number }
      process.kill(a.pid, "SIGKILL")
      await a.run.ended()
      // The dead owner's pid now belongs to another process of ours (played by a sleep): the pid is
      // alive, but its start time is not the recorded one.
      const reused = await helper("sh", ["-c", "echo up; exec sleep 600"])
      const recorded = Fs.existsSync(Path.join(dir, "owner.start"))
        ? Fs.readFileSync(Path.join(dir, "owner.start"), "utf8").split(" ")[1]!.trim()
        : "1"
      recordOwner(dir, reused.pid!, recorded)
      const b = await within(
        instance({ listen: [target], directory: dir, directoryTimeout: "40 seconds" }),
        30_000,
        "the newcomer, past a reused pid"
      )
      assert.strictEqual(b.reached.event, "ready", JSON.stringify(b.reached))
      assert.isFalse(b.hasParent)
      assert.strictEqual(await askPid(target), b.pid)
      assert.strictEqual(ownerPid(dir), b.pid)
      assert.strictEqual(
        Fs.readFileSync(Path.join(dir, "owner.start"), "utf8"),
        `${b.pid} ${startTime(b.pid)}\n`,
        "the owner records its pid with its start time"
      )

      if (process.getuid?.() === 0) {
        // A live process of another user, recorded with its true start time: still not an owner of ours.
        process.kill(b.pid, "SIGKILL")
        await b.run.ended()
        const foreign = await helper("sh", ["-c", "echo up; exec sleep 600"], { uid: 65534, gid: 65534 })
        recordOwner(dir, foreign.pid!, startTime(foreign.pid!))
        const c = await within(
          instance({ listen: [target], directory: dir, directoryTimeout: "40 seconds" }),
          30_000,
          "the newcomer, past another user's pid"
        )
        assert.strictEqual(c.reached.event, "ready", JSON.stringify(c.reached))
        assert.strictEqual(await askPid(target), c.pid)
      }
    },
    120_000
  )

  it("hands over 250 unix listeners with 100-byte paths: a 60 KB manifest, framed", async () => {
    const dir = coordination()
    const sockets = tempDir()
    const paths = Array.from({ length: 250 }, (_, i) => {
      const name = `-${String(i).padStart(3, "0")}.sock`
      return Path.join(sockets, "l".repeat(100 - sockets.length - 1 - name.length) + name)
    })
    assert.strictEqual(paths[0]!.length, 100)
    const listen = paths.map((path) => ({ path }))
    const a = await within(instance({ listen, directory: dir }), 60_000, "the first owner")
    assert.strictEqual(a.reached.event, "ready", JSON.stringify(a.reached))
    const b = await within(instance({ listen, directory: dir }), 60_000, "the newcomer")
    assert.strictEqual(b.reached.event, "ready", JSON.stringify(b.reached))
    assert.isTrue(b.hasParent)
    const started = b.run.events.find((e) => e.event === "started")!
    assert.strictEqual(started.inherited.length, 250)
    await within(a.run.ended(), 30_000, "the old owner's exit")
    for (const path of [paths[0]!, paths[124]!, paths[249]!]) assert.strictEqual(await askPid({ path }), b.pid)
  }, 180_000)

  it(
    "hands over 1000 unix listeners: fds in batches of 253, a manifest larger than the socket's send buffer",
    async () => {
      const dir = coordination()
      const sockets = tempDir()
      const paths = Array.from({ length: 1000 }, (_, i) => {
        const name = `-${String(i).padStart(4, "0")}.sock`
        return Path.join(sockets, "m".repeat(100 - sockets.length - 1 - name.length) + name)
      })
      const listen = paths.map((path) => ({ path }))
      const a = await within(instance({ listen, directory: dir }), 90_000, "the first owner")
      assert.strictEqual(a.reached.event, "ready", JSON.stringify(a.reached))
      const b = await within(instance({ listen, directory: dir }), 90_000, "the newcomer")
      assert.strictEqual(b.reached.event, "ready", JSON.stringify(b.reached))
      assert.strictEqual(b.run.events.find((e) => e.event === "started")!.inherited.length, 1000)
      await within(a.run.ended(), 30_000, "the old owner's exit")
      for (const i of [0, 252, 253, 505, 506, 999]) assert.strictEqual(await askPid({ path: paths[i]! }), b.pid)
    },
    240_000
  )

  it(
    "a newcomer facing an owner whose connection queue is full fails typed within its timeout, and answers SIGTERM",
    async () => {
      const dir = coordination()
      const owner = await helper("python3", ["test/fixtures/full-owner.py", Path.join(dir, "owner.sock")])
      recordOwner(dir, owner.pid!, startTime(owner.pid!))
      const began = Date.now()
      const b = await within(
        instance({ listen: [{ host: "127.0.0.1", port: 0 }], directory: dir, directoryTimeout: "3 seconds" }),
        40_000,
        "the newcomer's answer"
      )
      const took = Date.now() - began
      assert.strictEqual(b.reached.event, "failed")
      assert.strictEqual(b.reached.tag, "DirectoryError")
      assert.strictEqual(b.reached.reason, "Handover")
      assert.match(b.reached.message, /no handover within 3s: .*connection queue.*full \(EAGAIN\)/)
      // 3 s of timeout plus the start of a TypeScript process on a shared machine.
      assert.isBelow(took, 20_000, `the newcomer took ${took} ms`)

      // One with a minute to wait ends at once on SIGTERM, and lets the lock go.
      const { run } = start({
        listen: [{ host: "127.0.0.1", port: 0 }],
        directory: dir,
        directoryTimeout: "60 seconds"
      })
      await within(run.waitForLine(/connection queue at .* is full/), 40_000, "the newcomer's warning")
      const signalled = Date.now()
      process.kill(run.process.pid!, "SIGTERM")
      await within(run.ended(), 10_000, "the newcomer ending on SIGTERM")
      const ended = Date.now() - signalled
      assert.isBelow(ended, 5_000, `SIGTERM took ${ended} ms`)
      owner.kill("SIGKILL")
      const next = await within(
        instance({ listen: [{ host: "127.0.0.1", port: 0 }], directory: dir, directoryTimeout: "20 seconds" }),
        40_000,
        "the next newcomer"
      )
      assert.strictEqual(next.reached.event, "ready", "the lock was free and the dead owner's records stale")
    },
    180_000
  )

  it(
    "a newcomer facing an owner that does not answer (stopped) fails typed within its timeout, and answers SIGTERM",
    async () => {
      const dir = coordination()
      const a = await instance({ listen: [{ host: "127.0.0.1", port: 0 }], directory: dir })
      const target = { host: "127.0.0.1", port: a.reached.listeners[0].port as number }
      // Stopped, it accepts nothing, but the kernel still queues connections to it: connect succeeds.
      process.kill(a.pid, "SIGSTOP")
      try {
        const b = await within(
          instance({ listen: [target], directory: dir, directoryTimeout: "3 seconds" }),
          40_000,
          "the newcomer's answer"
        )
        assert.strictEqual(b.reached.event, "failed")
        assert.strictEqual(b.reached.tag, "DirectoryError")
        assert.match(
          b.reached.message,
          new RegExp(`no handover within 3s: waited for an answer from the owner \\(pid ${a.pid}\\)`)
        )

        const { run } = start({ listen: [target], directory: dir, directoryTimeout: "60 seconds" })
        await within(
          run.waitForLine(new RegExp(`the owner \\(pid ${a.pid}\\) has not answered`)),
          40_000,
          "the warning"
        )
        const signalled = Date.now()
        process.kill(run.process.pid!, "SIGTERM")
        await within(run.ended(), 10_000, "the newcomer ending on SIGTERM")
        assert.isBelow(Date.now() - signalled, 5_000)
      } finally {
        process.kill(a.pid, "SIGCONT")
      }
      assert.strictEqual(await within(askPid(target), 10_000, "the owner, continued"), a.pid, "the owner serves on")
      const c = await within(instance({ listen: [target], directory: dir }), 40_000, "the next newcomer")
      assert.strictEqual(c.reached.event, "ready")
      assert.isTrue(c.hasParent, "the continued owner hands over as ever")
    },
    180_000
  )

  it("an owner drops a newcomer that sends more than its ready line, buffering no more than a few bytes", async () => {
    const dir = coordination()
    const a = await instance({ listen: [{ host: "127.0.0.1", port: 0 }], directory: dir })
    const target = { host: "127.0.0.1", port: a.reached.listeners[0].port as number }
    // A newcomer of our own, as the same user: it reads the offer's first bytes, then floods the owner.
    const flood = Net.connect(Path.join(dir, "owner.sock"))
    flood.on("error", () => {})
    const header = await within(
      new Promise<string>((resolve) => flood.setEncoding("utf8").once("data", (chunk: string) => resolve(chunk))),
      20_000,
      "the offer"
    )
    const closed = new Promise<void>((resolve) => flood.once("close", () => resolve()))
    flood.write("x".repeat(1 << 20))
    await within(closed, 20_000, "the owner dropping the flooding newcomer")
    assert.match(header, /^offer 1 \d+\n/)
    await within(a.run.waitForLine(/sent \d+ bytes that are not .*ready.*; dropped it/), 20_000, "the owner's warning")
    assert.strictEqual(await askPid(target), a.pid, "the owner serves on")
    const b = await within(instance({ listen: [target], directory: dir }), 40_000, "the next newcomer")
    assert.strictEqual(b.reached.event, "ready")
    assert.isTrue(b.hasParent, "the owner hands over as ever")
  }, 120_000)

  it("a newcomer reads no more than it may: an oversized offer or an endless header is a typed error", async () => {
    for (
      const [answer, expected] of [
        ["offer 1 999999999999\n", /announced 999999999999 bytes of manifest for 1 sockets, over the limit of 8192/],
        ["y".repeat(1 << 20), /answered without a header line/]
      ] as const
    ) {
      const dir = coordination()
      // A fake owner in this process (same user), answering as told and then holding the connection open.
      const fake = Net.createServer((socket) => {
        socket.on("error", () => {})
        socket.write(answer)
      }).listen(Path.join(dir, "owner.sock"))
      await within(new Promise((resolve) => fake.once("listening", resolve)), 10_000, "the fake owner")
      try {
        const b = await within(
          instance({ listen: [{ host: "127.0.0.1", port: 0 }], directory: dir, directoryTimeout: "30 seconds" }),
          40_000,
          "the newcomer"
        )
        assert.strictEqual(b.reached.event, "failed")
        assert.strictEqual(b.reached.tag, "DirectoryError")
        assert.strictEqual(b.reached.reason, "Handover")
        assert.match(b.reached.message, expected)
      } finally {
        fake.close()
      }
    }
  }, 120_000)

  it("refuses a directory under one that others may write to without the sticky bit, naming it", async () => {
    const shared = Path.join(tempDir(), "shared")
    Fs.mkdirSync(shared)
    Fs.chmodSync(shared, 0o777)
    const dir = Path.join(shared, "run")
    Fs.mkdirSync(dir, { mode: 0o700 })
    const loose = await instance({ listen: [{ host: "127.0.0.1", port: 0 }], directory: dir })
    assert.strictEqual(loose.reached.event, "failed")
    assert.strictEqual(loose.reached.tag, "DirectoryError")
    assert.strictEqual(loose.reached.reason, "Permissions")
    assert.strictEqual(loose.reached.path, shared)
    assert.include(loose.reached.message, "without the sticky bit (mode 777)")
    // With the sticky bit, as /tmp has it, nobody else can rename or remove the directory.
    Fs.chmodSync(shared, 0o1777)
    const sticky = await instance({ listen: [{ host: "127.0.0.1", port: 0 }], directory: dir })
    assert.strictEqual(sticky.reached.event, "ready")
  })
})
