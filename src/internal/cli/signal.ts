/**
 * `effect-tableflip upgrade` and `prepare`: signal the process a PID file
 * names (never a stale one, never one without a handler for the signal),
 * then wait for the outcome it records beside the PID file.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as PidFile from "../../PidFile.js"
import * as Fx from "../fx.js"
import * as Procfs from "../procfs.js"
import { parseOptions, say, UsageError } from "./parse.js"
import { commandHelp, COMMANDS } from "./spec.js"

/** The process `upgrade` signalled, as /proc identifies it. */
interface Target {
  readonly pid: number
  readonly uid: number
  readonly startTicks: number
  readonly startedAt: number
}

/**
 * Whether `outcome`, read from a file owned by `owner`, answers a signal sent
 * at `since` to the process `pid` (running as `uid`, started at `startedAt`).
 * It does when that process wrote it (the file is root's or the process
 * user's, and the attempt began after the process started) and the attempt
 * began after the signal, or the process has handed over for good: then the
 * upgrade in flight when the signal came is the one that served it.
 */
const answers = (
  outcome: PidFile.Outcome,
  owner: number,
  target: Target,
  since: number
): boolean =>
  (owner === 0 || owner === target.uid) &&
  outcome.pid === target.pid &&
  outcome.startedAt >= target.startedAt - 50 &&
  (outcome.startedAt >= since || (outcome.outcome === "upgraded" && outcome.handedOver === true))

/** The outcome file's record and owner, if it can be read and parsed. */
const readOutcome = (file: string): { readonly outcome: PidFile.Outcome; readonly owner: number } | undefined => {
  try {
    const fd = Fs.openSync(file, "r")
    try {
      const owner = Fs.fstatSync(fd).uid
      const outcome = JSON.parse(Fs.readFileSync(fd, "utf8")) as PidFile.Outcome
      return typeof outcome === "object" && outcome !== null ? { outcome, owner } : undefined
    } finally {
      Fs.closeSync(fd)
    }
  } catch {
    return undefined
  }
}

/**
 * Waits for the outcome that answers a SIGHUP sent at `since`, or for the
 * process to exit without one. The outcome is renamed into place, so the
 * directory is watched; the process's exit has no event Node can wait on, so
 * it is checked each second.
 */
const awaitOutcome = (file: string, target: Target, since: number) =>
  Fx.callback<PidFile.Outcome | "exited">((resume) => {
    const check = () => {
      const read = readOutcome(file)
      if (read !== undefined && answers(read.outcome, read.owner, target, since)) {
        done()
        resume(Effect.succeed(read.outcome))
      } else if (Procfs.processIdentity(target.pid)?.startTicks !== target.startTicks) {
        done()
        resume(Effect.succeed("exited"))
      }
    }
    const watcher = Fs.watch(Path.dirname(file), check)
    const interval = setInterval(check, 1000)
    const done = () => {
      watcher.close()
      clearInterval(interval)
    }
    check()
    return Effect.sync(done)
  })

/** What `upgrade` and `prepare` each send, where the answer is recorded, and how it reads. */
const SIGNALLED = {
  upgrade: { signal: "SIGHUP", outcomes: PidFile.outcomePath, done: "upgraded", what: "upgrade" },
  prepare: { signal: "SIGUSR2", outcomes: PidFile.prepareOutcomePath, done: "prepared", what: "prepare" }
} as const

/** `effect-tableflip upgrade` and `prepare`: signal the process in the PID file and wait for its outcome. */
export const signalAndAwait = (name: keyof typeof SIGNALLED, args: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const { done, outcomes, signal, what } = SIGNALLED[name]
    const options = parseOptions(name, args, false)
    if (options.help) return yield* say(0, commandHelp(COMMANDS[name]))
    const pidFile = options.file("pid-file")
    if (pidFile === undefined) throw new UsageError(`effect-tableflip ${name}: --pid-file is required`)
    const timeout = options.duration("timeout")
    const verified = yield* Fx.result(PidFile.verify(pidFile))
    if (Fx.isFailure(verified)) {
      const error = Fx.failureOf(verified)
      return yield* say(error._tag === "StalePidFile" ? 4 : 2, error.message)
    }
    const pid = Fx.successOf(verified)
    const identity = Procfs.processIdentity(pid)
    if (identity !== undefined && Procfs.catches(pid, signal) === false) {
      return yield* say(
        2,
        `pid ${pid} from ${pidFile} has no ${signal} handler, so ${signal} would end it; nothing was sent ` +
          `(is Upgrader.layerSignal() in its layers${name === "prepare" ? ", with prepare enabled" : ""}?)`
      )
    }
    const since = Date.now()
    try {
      if (identity === undefined) throw Object.assign(new Error("gone"), { code: "ESRCH" })
      process.kill(pid, signal)
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      return yield* code === "ESRCH"
        ? say(4, `pid ${pid} from ${pidFile} exited before it could be signalled`)
        : say(2, `cannot signal pid ${pid} from ${pidFile}: ${code} (${(error as Error).message})`)
    }
    const outcome = yield* awaitOutcome(outcomes(pidFile), { pid, ...identity! }, since).pipe(
      Effect.timeout(timeout),
      Effect.option
    )
    if (outcome._tag === "None") {
      return yield* say(3, `no outcome from pid ${pid} within ${Duration.format(timeout)}`)
    }
    if (outcome.value === "exited") {
      return yield* say(1, `pid ${pid} exited without recording the outcome of its ${what}`)
    }
    const { child, error } = outcome.value
    return yield* outcome.value.outcome === done
      ? say(0, `${done}: pid ${pid} -> ${child}`)
      : say(1, `${what} failed: ${error?._tag}: ${error?.message}`)
  })
