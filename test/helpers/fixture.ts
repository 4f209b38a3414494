/**
 * Drives fixture programs as real processes and reads their JSON-line events.
 */
import { afterEach } from "@effect/vitest"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import type { Event as GenerationEvent, Plan } from "../fixtures/generation.js"

export const root = Path.resolve(import.meta.dirname, "../..")

/** The environment variable that marks every process of one Run. */
const MARK = "TABLEFLIP_TEST_RUN"
let runs = 0

/**
 * An event line, typed by the generation fixture's union (`at-spawn.cjs` reports into it too): a
 * misspelt name does not compile, and `e.event === "ready"` narrows to that event's fields. Other
 * fields read loosely, as after a predicate TypeScript does not narrow through
 * (`e.event === "ready" && e.pid === pid`).
 */
export type Event = GenerationEvent & { readonly [key: string]: any }

/**
 * A process tree started by a test: the first generation and every
 * generation after it report to the same stdout, which this reads.
 */
export class Run {
  readonly events: Array<Event> = []
  readonly output: Array<string> = []
  readonly process: ChildProcess.ChildProcess
  readonly #waiters = new Set<() => void>()
  #closed = false
  /** Every generation inherits the environment, so this finds them all, even those that report nothing. */
  readonly #mark = `${process.pid}-${++runs}`

  constructor(
    file: string,
    args: ReadonlyArray<string>,
    options: {
      readonly env?: NodeJS.ProcessEnv
      readonly extraStdio?: ReadonlyArray<ChildProcess.IOType | "ipc" | number>
      /** A command that execs the rest of its arguments, such as a systemd-like launcher. */
      readonly launcher?: ReadonlyArray<string>
      /** In a process group of its own, as a shell's foreground job: `process.kill(-pid)` signals the group. */
      readonly detached?: boolean
      /** JavaScript run with plain `node`, as a user runs a package's build, instead of TypeScript through tsx. */
      readonly plain?: boolean
      readonly cwd?: string
    } = {}
  ) {
    const runtime = options.plain === true ? [process.execPath] : [process.execPath, "--import", "tsx"]
    const command = [...(options.launcher ?? []), ...runtime, file, ...args]
    this.process = ChildProcess.spawn(command[0]!, command.slice(1), {
      cwd: options.cwd ?? root,
      env: { ...process.env, ...options.env, [MARK]: this.#mark },
      stdio: ["ignore", "pipe", "pipe", ...(options.extraStdio ?? [])],
      detached: options.detached ?? false
    })
    let buffer = ""
    this.process.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      buffer += chunk
      let newline: number
      while ((newline = buffer.indexOf("\n")) !== -1) {
        const line = buffer.slice(0, newline)
        buffer = buffer.slice(newline + 1)
        this.output.push(line)
        if (line.startsWith("{\"event\"")) this.events.push(JSON.parse(line) as Event)
        this.#notify()
      }
    })
    this.process.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
      this.output.push(chunk)
      this.#notify()
    })
    // stdout stays open while any generation lives: every one inherits it.
    this.process.stdout!.on("close", () => {
      this.#closed = true
      this.#notify()
    })
  }

  #notify(): void {
    for (const waiter of this.#waiters) waiter()
  }

  /** Every pid that reported an event: the processes this test started. */
  pids(): ReadonlyArray<number> {
    return [...new Set(this.events.map((event) => event.pid))]
  }

  /** Resolves with the first event (from index `from` on) that matches. */
  waitFor(predicate: (event: Event) => boolean, from = 0): Promise<Event> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.events.slice(from).find(predicate)
        if (found !== undefined) {
          this.#waiters.delete(check)
          resolve(found)
        } else if (this.#closed) {
          this.#waiters.delete(check)
          reject(new Error(`every generation ended before the awaited event.\n${this.output.join("\n")}`))
        }
      }
      this.#waiters.add(check)
      check()
    })
  }

  /** Resolves with the first output line (from index `from` on) that matches. */
  waitForLine(pattern: RegExp, from = 0): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.output.slice(from).find((line) => pattern.test(line))
        if (found !== undefined) {
          this.#waiters.delete(check)
          resolve(found)
        } else if (this.#closed) {
          this.#waiters.delete(check)
          reject(new Error(`output ended before ${pattern}.\n${this.output.join("\n")}`))
        }
      }
      this.#waiters.add(check)
      check()
    })
  }

  /** Resolves with the exit code of the first generation (the process this run spawned). */
  exited(): Promise<number | null> {
    if (this.process.exitCode !== null || this.process.signalCode !== null) {
      return Promise.resolve(this.process.exitCode)
    }
    return new Promise((resolve) => this.process.once("exit", (code) => resolve(code)))
  }

  /** Resolves once every generation has closed stdout (all have exited). */
  ended(): Promise<void> {
    return new Promise((resolve) => {
      const check = () => {
        if (this.#closed) {
          this.#waiters.delete(check)
          resolve()
        }
      }
      this.#waiters.add(check)
      check()
    })
  }

  /** Every live process of this run: those that reported, and any carrying its mark in their environment. */
  processes(): ReadonlyArray<number> {
    const found = new Set(this.pids().filter(isAlive))
    const needle = `${MARK}=${this.#mark}\0`
    for (const entry of Fs.readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue
      try {
        if (`${Fs.readFileSync(`/proc/${entry}/environ`, "latin1")}\0`.includes(needle)) found.add(Number(entry))
      } catch {
        // Gone, or not ours to read.
      }
    }
    return [...found]
  }

  /** Ends every process this run started that is still alive, by pid. */
  kill(): void {
    for (const pid of this.processes()) {
      if (isAlive(pid)) process.kill(pid, "SIGKILL")
    }
    if (this.process.exitCode === null) this.process.kill("SIGKILL")
  }
}

export const isAlive = (pid: number): boolean => {
  try {
    // A zombie still answers signal 0; it is not alive for our purposes but must be reported.
    const stat = Fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    return !/\) Z /.test(stat)
  } catch {
    return false
  }
}

/** Whether `pid` exists at all, as a live process or a zombie. */
export const exists = (pid: number): boolean => Fs.existsSync(`/proc/${pid}`)

export const fdCount = (pid: number): number => Fs.readdirSync(`/proc/${pid}/fd`).length

/** The inode of the listening TCP socket on `port`, from the kernel's tables. */
export const listeningInode = (port: number): string | undefined => {
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    for (const line of Fs.readFileSync(table, "utf8").split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/)
      if (fields.length < 10) continue
      const localPort = parseInt(fields[1]!.split(":")[1]!, 16)
      if (localPort === port && fields[3] === "0A") return fields[9]
    }
  }
  return undefined
}

/** Whether `pid` holds the socket with this inode. */
export const holdsSocket = (pid: number, inode: string): boolean =>
  Fs.readdirSync(`/proc/${pid}/fd`).some((fd) => {
    try {
      return Fs.readlinkSync(`/proc/${pid}/fd/${fd}`) === `socket:[${inode}]`
    } catch {
      return false
    }
  })

export const tempDir = (): string => Fs.mkdtempSync(Path.join(Os.tmpdir(), "tableflip-test-"))

/** A short path for unix sockets (their paths are limited to 107 bytes). */
export const socketPath = (dir: string, name: string): string => Path.join(dir, name)

/** Connects, reads the pid the server writes, and returns it; rejects on any socket error. */
export const askPid = (target: Net.NetConnectOpts): Promise<number> =>
  new Promise((resolve, reject) => {
    const socket = Net.connect(target)
    let data = ""
    socket.setEncoding("utf8")
    socket.on("data", (chunk: string) => (data += chunk))
    socket.on("error", reject)
    socket.on("end", () => {
      const pid = Number(data.trim())
      if (Number.isInteger(pid) && pid > 0) resolve(pid)
      else reject(new Error(`unexpected answer ${JSON.stringify(data)}`))
    })
  })

export const writePlan = (file: string, plan: object): void => {
  Fs.writeFileSync(`${file}.tmp`, JSON.stringify(plan))
  Fs.renameSync(`${file}.tmp`, file)
}

/**
 * Opens new connections continuously, `concurrency` at a time, until `until`
 * resolves; counts answers per pid and failures by error code.
 */
export const hammer = async (
  target: Net.NetConnectOpts,
  until: Promise<unknown>,
  concurrency = 4
): Promise<{ readonly ok: number; readonly failures: Array<string>; readonly byPid: Map<number, number> }> => {
  let done = false
  // Settled either way: the caller awaits `until` itself and sees its failure there.
  void until.then(() => (done = true), () => (done = true))
  const byPid = new Map<number, number>()
  const failures: Array<string> = []
  let ok = 0
  const loop = async () => {
    while (!done) {
      try {
        const pid = await askPid(target)
        byPid.set(pid, (byPid.get(pid) ?? 0) + 1)
        ok++
      } catch (error) {
        failures.push((error as NodeJS.ErrnoException).code ?? String(error))
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, loop))
  return { ok, failures, byPid }
}

/**
 * Runs started by one test file, each ended (by pid) after its test. `start`
 * runs the generation fixture with a plan file of its own.
 */
export const generations = () => {
  const runs: Array<Run> = []
  afterEach(() => {
    for (const run of runs.splice(0)) run.kill()
  })
  const track = (run: Run): Run => {
    runs.push(run)
    return run
  }
  const start = (plan: Plan, env: NodeJS.ProcessEnv = {}) => {
    const dir = tempDir()
    const planFile = Path.join(dir, "plan.json")
    writePlan(planFile, plan)
    const run = track(new Run("test/fixtures/generation.ts", ["--plan", planFile], { env }))
    return { run, dir, planFile }
  }
  return { start, track }
}

/** `promise`, or a rejection naming `what` after `ms`: a test never waits without a deadline. */
export const within = <A>(promise: Promise<A>, ms: number, what: string): Promise<A> => {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)
  })
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer))
}

/** A port nobody listens on right now (bound and released; another process could take it meanwhile). */
export const freePort = (): Promise<number> =>
  new Promise((resolve) => {
    const server = Net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as Net.AddressInfo
      server.close(() => resolve(port))
    })
  })

/** Upgrades the generation `pid` (SIGUSR2) and resolves with its successor once that one serves alone. */
export const upgradeFrom = async (run: Run, pid: number): Promise<number> => {
  const from = run.events.length
  process.kill(pid, "SIGUSR2")
  const outcome = await run.waitFor(
    (e) => (e.event === "upgraded" || e.event === "upgrade-failed") && e.pid === pid,
    from
  )
  if (outcome.event !== "upgraded") throw new Error(`upgrade failed: ${outcome.message}`)
  await run.waitFor((e) => e.event === "parent-gone" && e.pid === outcome.child, from)
  return outcome.child
}

/**
 * NODE_OPTIONS that preload `test/fixtures/at-spawn.cjs` into every generation, so
 * that a plan's `atSpawn` reaches a new generation before its event loop first runs.
 */
export const atSpawnPreload = (): NodeJS.ProcessEnv => ({
  NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} --require ${
    JSON.stringify(Path.join(root, "test/fixtures/at-spawn.cjs"))
  }`.trim()
})
