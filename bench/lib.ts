/**
 * What the demo and the benchmark share: starting a contender's server,
 * upgrading it while a separate load process runs, and reading the numbers.
 * Traffic goes to 127.0.0.1 only; every process is ended by its pid.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import type { LoadResult } from "./load.js"

export const root = Path.resolve(import.meta.dirname, "..")

// Every process the bench starts (servers, generations, probes, floors) runs without
// NODE_EXTRA_CA_CERTS. The bench machine sets it, and Node 20 reads the CA bundle at start: about 80 ms of
// CPU per process, which a deployment without it never pays. It inflated every generation's start
// and shrank every ratio against a plain app.
delete process.env.NODE_EXTRA_CA_CERTS
const now = () => performance.timeOrigin + performance.now()

export type ContenderName =
  | "effect-tableflip"
  | "effect-tableflip-prepared"
  | "effect-tableflip-effect4"
  | "naive-restart"
  | "cluster-reload"

export interface Upgrade {
  readonly signalAt: number
  /** Signal to the new generation ready (listening, for the others). */
  readonly readyMs: number
  /** Signal to the old generation's exit. */
  readonly oldExitMs: number
  readonly oldPid: number
  readonly newPid: number
  readonly oldRssMb: number
  readonly newRssMb: number
  /** CPU the old generation used from the signal until its exit (last /proc sample, 5 ms apart). */
  readonly oldCpuMs: number
  /** CPU the new generation used from its start until it was ready. */
  readonly newCpuMs: number
  /** Private memory (Private_Clean + Private_Dirty) of the old generation at the signal, and of the new at ready. */
  readonly oldPrivateMb: number
  readonly newPrivateMb: number
  /**
   * A prepared upgrade: from `effect-tableflip prepare` until the next
   * generation was parked, before the signal. Requests in it count as inside
   * an upgrade window too: that is where the new generation's start-up went.
   */
  readonly prepare?: { readonly startAt: number; readonly endAt: number } | undefined
}

/** USER_HZ: 100 on every Linux Node runs on. */
const TICK_MS = 10

/** utime + stime of a process (ms), or `undefined` once it is gone. */
export const cpuMs = (pid: number): number | undefined => {
  try {
    const stat = Fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    // Fields 14 and 15 (utime, stime), counted from the state letter, which is field 3.
    return (Number(fields[11]) + Number(fields[12])) * TICK_MS
  } catch {
    return undefined
  }
}

/** Memory only this process holds: the cost of one more generation. */
export const privateMb = (pid: number): number => {
  try {
    const rollup = Fs.readFileSync(`/proc/${pid}/smaps_rollup`, "utf8")
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+)`, "m").exec(rollup)?.[1] ?? 0)
    return Math.round((kb("Private_Clean") + kb("Private_Dirty")) / 102.4) / 10
  } catch {
    return 0
  }
}

/**
 * Follows a process's CPU time every 5 ms until it is gone, so that the last
 * reading before its exit is known (a reaped process has no /proc entry).
 */
const followCpu = (pid: number) => {
  const first = cpuMs(pid) ?? 0
  let last = first
  const timer = setInterval(() => {
    const now = cpuMs(pid)
    if (now === undefined) clearInterval(timer)
    else last = now
  }, 5)
  return {
    /** CPU since following began. */
    used: () => {
      clearInterval(timer)
      return last - first
    }
  }
}

export interface Server {
  readonly pid: () => number
  readonly rssMb: () => number
  readonly upgrade: () => Promise<Upgrade>
  readonly stop: () => Promise<void>
}

/** Lines a process writes to stdout, with waiting for one that matches. */
class Lines {
  readonly lines: Array<string> = []
  readonly #waiters = new Set<() => void>()
  constructor(stream: NodeJS.ReadableStream) {
    let buffer = ""
    stream.setEncoding("utf8")
    stream.on("data", (chunk: string) => {
      buffer += chunk
      let newline: number
      while ((newline = buffer.indexOf("\n")) !== -1) {
        this.lines.push(buffer.slice(0, newline))
        buffer = buffer.slice(newline + 1)
      }
      for (const waiter of this.#waiters) waiter()
    })
  }
  wait(pattern: RegExp, from: number): Promise<RegExpExecArray> {
    return new Promise((resolve) => {
      const check = () => {
        for (const line of this.lines.slice(from)) {
          const match = pattern.exec(line)
          if (match !== null) {
            this.#waiters.delete(check)
            return resolve(match)
          }
        }
      }
      this.#waiters.add(check)
      check()
    })
  }
}

/**
 * Servers run from the JavaScript `npm run build` leaves in build/ (as a
 * deployed service would), so that start-up times are the library's and
 * Node's, not the TypeScript loader's.
 */
const node = (script: string, args: ReadonlyArray<string>, tree = root) =>
  ChildProcess.spawn(process.execPath, [Path.join(tree, "build", script.replace(/\.ts$/, ".js")), ...args], {
    cwd: root,
    stdio: ["ignore", "pipe", "inherit"]
  })

export const rssMb = (pid: number): number => {
  try {
    const kb = Number(/VmRSS:\s+(\d+)/.exec(Fs.readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0)
    return Math.round(kb / 102.4) / 10
  } catch {
    return 0
  }
}

const exited = (child: ChildProcess.ChildProcess): Promise<void> =>
  child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise((resolve) => child.once("exit", () => resolve()))

/** `effect-tableflip prepare` from the package's own build; resolves when it exits 0. */
const prepareCommand = (pidFile: string, tree: string): Promise<void> =>
  new Promise((resolve, reject) => {
    const child = ChildProcess.spawn(process.execPath, [
      Path.join(tree, "dist/bin.js"),
      "prepare",
      "--pid-file",
      pidFile
    ], {
      stdio: ["ignore", "ignore", "inherit"]
    })
    child.once("exit", (code) => code === 0 ? resolve() : reject(new Error(`effect-tableflip prepare exited ${code}`)))
  })

/**
 * effect-tableflip: examples/http-server.ts, upgraded with SIGHUP to the pid in its PID file;
 * `prepared`: after `effect-tableflip prepare` has parked the next generation. `tree` is the
 * build it runs from: this one (Effect 3), or the Effect 4 tree (`effect4Tree`).
 */
const tableflip = (prepared: boolean, tree = root) => async (port: number, dir: string): Promise<Server> => {
  const pidFile = Path.join(dir, "app.pid")
  const child = node("examples/http-server.ts", ["--port", String(port), "--pid-file", pidFile], tree)
  const out = new Lines(child.stdout!)
  // A build that cannot start (a stale or half-built tree) ends the bench with its exit, not a hang.
  await Promise.race([
    out.wait(/generation 1 serving/, 0),
    new Promise<never>((_, reject) =>
      child.once(
        "exit",
        (code, signal) =>
          reject(
            new Error(
              `${Path.relative(root, tree) || "."}: examples/http-server exited (${signal ?? code}) before serving`
            )
          )
      )
    )
  ])
  const pid = () => Number(Fs.readFileSync(pidFile, "utf8"))
  const pidChanged = (old: number) =>
    new Promise<number>((resolve) => {
      // The PID file is renamed into place when the new generation is ready.
      const watcher = Fs.watch(dir, () => check())
      const check = () => {
        const current = Fs.existsSync(pidFile) ? pid() : old
        if (current !== old) {
          watcher.close()
          resolve(current)
        }
      }
      check()
    })
  return {
    pid,
    rssMb: () => rssMb(pid()),
    upgrade: async () => {
      const oldPid = pid()
      const oldRssMb = rssMb(oldPid)
      const oldPrivateMb = privateMb(oldPid)
      const prepareAt = now()
      if (prepared) await prepareCommand(pidFile, tree)
      const preparedAt = now()
      const from = out.lines.length
      const changed = pidChanged(oldPid)
      const old = followCpu(oldPid)
      const signalAt = now()
      process.kill(oldPid, "SIGHUP")
      const newPid = await changed
      const readyAt = now()
      const newCpuMs = cpuMs(newPid) ?? 0
      const newRssMb = rssMb(newPid)
      const newPrivateMb = privateMb(newPid)
      await out.wait(new RegExp(`previous generation \\(pid ${oldPid}\\) has exited`), from)
      return {
        signalAt,
        readyMs: readyAt - signalAt,
        oldExitMs: now() - signalAt,
        oldPid,
        newPid,
        oldRssMb,
        newRssMb,
        oldCpuMs: old.used(),
        newCpuMs,
        oldPrivateMb,
        newPrivateMb,
        prepare: prepared ? { startAt: prepareAt, endAt: preparedAt } : undefined
      }
    },
    stop: async () => {
      const last = pid()
      const done = new Promise<void>((resolve) => child.stdout!.once("close", () => resolve()))
      process.kill(last, "SIGTERM")
      await done
    }
  }
}

/** naive-restart: stop the old server, then start the new one. */
const naive = async (port: number): Promise<Server> => {
  const start = async () => {
    const child = node("bench/contenders/naive.ts", ["--port", String(port)])
    await new Lines(child.stdout!).wait(/"event":"ready"/, 0)
    return child
  }
  let current = await start()
  return {
    pid: () => current.pid!,
    rssMb: () => rssMb(current.pid!),
    upgrade: async () => {
      const old = current
      const oldRssMb = rssMb(old.pid!)
      const oldPrivateMb = privateMb(old.pid!)
      const oldCpu = followCpu(old.pid!)
      const signalAt = now()
      old.kill("SIGTERM")
      await exited(old)
      const oldExitMs = now() - signalAt
      current = await start()
      return {
        signalAt,
        readyMs: now() - signalAt,
        oldExitMs,
        oldPid: old.pid!,
        newPid: current.pid!,
        oldRssMb,
        newRssMb: rssMb(current.pid!),
        oldCpuMs: oldCpu.used(),
        newCpuMs: cpuMs(current.pid!) ?? 0,
        oldPrivateMb,
        newPrivateMb: privateMb(current.pid!)
      }
    },
    stop: async () => {
      current.kill("SIGTERM")
      await exited(current)
    }
  }
}

/** cluster-reload: a node:cluster primary replacing its worker as PM2's reload does. */
const cluster = async (port: number): Promise<Server> => {
  const primary = node("bench/contenders/cluster.ts", ["--port", String(port)])
  const out = new Lines(primary.stdout!)
  let worker = Number((await out.wait(/"event":"ready","pid":(\d+)/, 0))[1])
  return {
    pid: () => worker,
    rssMb: () => rssMb(worker),
    upgrade: async () => {
      const oldPid = worker
      const oldRssMb = rssMb(oldPid)
      const oldPrivateMb = privateMb(oldPid)
      const from = out.lines.length
      const old = followCpu(oldPid)
      const signalAt = now()
      primary.kill("SIGHUP")
      worker = Number((await out.wait(/"event":"ready","pid":(\d+)/, from))[1])
      const readyMs = now() - signalAt
      const newCpuMs = cpuMs(worker) ?? 0
      const newRssMb = rssMb(worker)
      const newPrivateMb = privateMb(worker)
      await out.wait(new RegExp(`"event":"exited","pid":${oldPid}`), from)
      return {
        signalAt,
        readyMs,
        oldExitMs: now() - signalAt,
        oldPid,
        newPid: worker,
        oldRssMb,
        newRssMb,
        oldCpuMs: old.used(),
        newCpuMs,
        oldPrivateMb,
        newPrivateMb
      }
    },
    stop: async () => {
      primary.kill("SIGTERM")
      await exited(primary)
    }
  }
}

/** The Effect 4 build's tree (`npm run check:effect4`, then `npm run build` there). */
export const effect4Tree = Path.join(root, "build/effect4")
const [nodeMajor = 0, nodeMinor = 0] = process.versions.node.split(".").map(Number)
/** Whether this Node can run the Effect 4 build: 22.19 or later. */
export const effect4Node = nodeMajor > 22 || (nodeMajor === 22 && nodeMinor >= 19)

/** Whether this Node can run the Effect 4 build and its example is built. */
export const effect4Runs = effect4Node &&
  Fs.existsSync(Path.join(effect4Tree, "build/examples/http-server.js")) &&
  Fs.existsSync(Path.join(effect4Tree, "dist/bin.js"))

export const contenders: Record<ContenderName, (port: number, dir: string) => Promise<Server>> = {
  "effect-tableflip": tableflip(false),
  "effect-tableflip-prepared": tableflip(true),
  "effect-tableflip-effect4": tableflip(false, effect4Tree),
  "naive-restart": naive,
  "cluster-reload": cluster
}

export const freePort = (): Promise<number> =>
  new Promise((resolve) => {
    const server = Net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as Net.AddressInfo
      server.close(() => resolve(port))
    })
  })

export const tempDir = (): string => Fs.mkdtempSync(Path.join(Os.tmpdir(), "tableflip-bench-"))

export interface Load {
  readonly progress: () => { readonly requests: number; readonly failed: number }
  readonly stop: () => Promise<LoadResult>
}

/** Starts the load generator process against 127.0.0.1:port. */
export const startLoad = (
  port: number,
  options: {
    readonly clients: number
    readonly keepAlive: boolean
    readonly path: string
    readonly maxSeconds?: number
  },
  dir: string
): Load => {
  const out = Path.join(dir, `load-${Date.now()}.json`)
  const child = ChildProcess.spawn(process.execPath, [
    "--import",
    "tsx",
    "bench/load.ts",
    "--port",
    String(port),
    "--clients",
    String(options.clients),
    "--path",
    options.path,
    "--out",
    out,
    ...(options.maxSeconds === undefined ? [] : ["--max-seconds", String(options.maxSeconds)]),
    ...(options.keepAlive ? [] : ["--close"])
  ], { cwd: root, stdio: ["ignore", "pipe", "inherit"] })
  const lines = new Lines(child.stdout!)
  return {
    progress: () => {
      const last = lines.lines.at(-1)
      return last === undefined ? { requests: 0, failed: 0 } : JSON.parse(last)
    },
    stop: async () => {
      child.kill("SIGTERM")
      await exited(child)
      return JSON.parse(Fs.readFileSync(out, "utf8")) as LoadResult
    }
  }
}

export interface Latency {
  readonly n: number
  readonly p50: number
  readonly p99: number
  readonly max: number
}

export const latency = (values: ReadonlyArray<number>): Latency => {
  const sorted = [...values].sort((a, b) => a - b)
  const at = (q: number) =>
    sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
  const round = (x: number) => Math.round(x * 100) / 100
  return { n: sorted.length, p50: round(at(0.5)), p99: round(at(0.99)), max: round(sorted.at(-1) ?? 0) }
}

/**
 * How long after the new generation is ready an upgrade window lasts at
 * least: the old one's clients reconnect to a generation that has not served
 * yet, and its first moments under the full load belong to the upgrade.
 */
export const WINDOW_TAIL_MS = Number(process.env["BENCH_WINDOW_TAIL_MS"] ?? 1000)

/** Where an upgrade window ends, ms after its signal. */
export const windowEndMs = (u: Upgrade): number => Math.max(u.readyMs + WINDOW_TAIL_MS, u.oldExitMs)

/** Latencies of successful requests that started inside an upgrade window, and outside (steady). */
export const splitByWindows = (result: LoadResult, upgrades: ReadonlyArray<Upgrade>) => {
  const inside: Array<number> = []
  const outside: Array<number> = []
  result.start.forEach((start, i) => {
    const ms = result.latency[i]!
    if (ms < 0) return
    // From the signal until the old generation is gone and the new one has served for a while.
    const within = upgrades.some((u) =>
      (start >= u.signalAt && start <= u.signalAt + windowEndMs(u)) ||
      (u.prepare !== undefined && start >= u.prepare.startAt && start <= u.prepare.endAt)
    )
    ;(within ? inside : outside).push(ms)
  })
  return { inside: latency(inside), outside: latency(outside) }
}

/** Waits `ms` while the load runs: the benchmark's pacing, not a test's hope. */
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
