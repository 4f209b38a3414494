/**
 * An atomic, symlink-safe PID file.
 *
 * A reader (systemd's `PIDFile=`, a script running `kill -HUP $(cat app.pid)`)
 * must never see the file empty or half-written, so it is written to a fresh
 * temporary file in the same directory and renamed over the target. `rename`
 * replaces a symlink at the target instead of following it, so a link planted
 * there cannot redirect the write to another file.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Fx from "./internal/fx.js"
import * as Procfs from "./internal/procfs.js"
import { PidFileError, StalePidFile } from "./UpgradeError.js"

/**
 * Writes `pid` (decimal, newline-terminated, mode 0644) to `path` atomically.
 * For this process's own pid it first records its start time beside the
 * file (`startPath`), which `verify` and `effect-tableflip upgrade` take as
 * the proof that the pid still names this process.
 *
 * @since 0.1.0
 * @category constructors
 */
export const write = (path: string, pid: number = process.pid): Effect.Effect<void, PidFileError> =>
  Effect.try({
    try: () => {
      // This process's start record first: a reader that finds the new pid finds its proof beside it.
      const stat = pid === process.pid ? Procfs.processStat(pid) : undefined
      if (stat !== undefined) writeAtomic(startPath(path), `${pid} ${stat.startTime}\n`)
      writeAtomic(path, `${pid}\n`)
    },
    catch: (cause) => new PidFileError({ path, cause })
  })

/**
 * Where `write` records the process's start time beside a PID file, the
 * proof that a pid still names the process that wrote it: `app.pid` ->
 * `app.start` (`<pid> <start time in clock ticks after boot>`, from
 * /proc/<pid>/stat). A pid is reused; a pid and its start time are not.
 *
 * @since 0.3.0
 * @category constructors
 */
export const startPath = (pidFile: string): string =>
  pidFile.endsWith(".pid") ? `${pidFile.slice(0, -4)}.start` : `${pidFile}.start`

/**
 * The pid the start record beside `pidFile` names, if it is provably that
 * process: alive (not a zombie), started when the record says, and the
 * record belongs to root or to the user the process runs as. `undefined`
 * for anything else: no record (Linux only), a dead pid, a pid reused since.
 *
 * @since 0.3.0
 * @category constructors
 */
export const proven = (pidFile: string): number | undefined => {
  const record = readStart(pidFile)
  if (record === undefined) return undefined
  const stat = Procfs.processStat(record.pid)
  if (stat === undefined || stat.state === "Z" || stat.startTime !== record.startTime) return undefined
  const uid = Procfs.processUid(record.pid)
  return uid !== undefined && (record.owner === 0 || record.owner === uid) ? record.pid : undefined
}

const readStart = (
  pidFile: string
): { readonly pid: number; readonly startTime: string; readonly owner: number } | undefined => {
  try {
    const path = startPath(pidFile)
    const stat = Fs.lstatSync(path)
    if (!stat.isFile()) return undefined
    const match = /^(\d+) (\d+)\n?$/.exec(Fs.readFileSync(path, "utf8"))
    const pid = Number(match?.[1])
    return match === null || !Number.isSafeInteger(pid) || pid <= 0
      ? undefined
      : { pid, startTime: match[2]!, owner: stat.uid }
  } catch {
    return undefined
  }
}

/**
 * How the last upgrade a generation attempted ended, as `effect-tableflip
 * upgrade` reads it: written atomically beside the PID file (`outcomePath`)
 * by the generation that attempted it.
 *
 * @since 0.2.0
 * @category models
 */
export interface Outcome {
  /** The generation that attempted the upgrade. */
  readonly pid: number
  /** When the attempt began, ms since the epoch. */
  readonly startedAt: number
  readonly endedAt: number
  /** `"prepared"`: a prepare (`effect-tableflip prepare`) parked the next generation. */
  readonly outcome: "upgraded" | "prepared" | "failed"
  /**
   * The recording process handed its service over for good (an app's
   * generation that upgraded): every later signal to it is answered by this
   * record. A runner, which upgrades again and again, never sets it.
   */
  readonly handedOver?: boolean | undefined
  /** The new generation's pid, when it upgraded or was prepared. */
  readonly child?: number | undefined
  /** The typed error's tag and message, when it failed. */
  readonly error?: { readonly _tag: string; readonly message: string } | undefined
}

/**
 * Where the outcome of upgrades is recorded for a PID file: `<pidFile>.upgrade.json`.
 *
 * @since 0.2.0
 * @category constructors
 */
export const outcomePath = (pidFile: string): string => `${pidFile}.upgrade.json`

/**
 * Where the outcome of prepares is recorded for a PID file: `<pidFile>.prepare.json`.
 *
 * @since 0.4.0
 * @category constructors
 */
export const prepareOutcomePath = (pidFile: string): string => `${pidFile}.prepare.json`

/**
 * Records an upgrade's outcome beside the PID file.
 *
 * @since 0.2.0
 * @category constructors
 */
export const writeOutcome = (
  pidFile: string,
  outcome: Outcome,
  /** Where: `outcomePath` (the default) or `prepareOutcomePath`. */
  path: (pidFile: string) => string = outcomePath
): Effect.Effect<void, PidFileError> =>
  Effect.try({
    try: () => writeAtomic(path(pidFile), `${JSON.stringify(outcome)}\n`),
    catch: (cause) => new PidFileError({ path: path(pidFile), cause })
  })

/**
 * Reads the pid stored in `path`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const read = (path: string): Effect.Effect<number, PidFileError> =>
  Effect.try({
    try: () => {
      const text = Fs.readFileSync(path, "utf8").trim()
      const pid = Number(text)
      if (!/^\d+$/.test(text) || !Number.isSafeInteger(pid) || pid <= 0) {
        throw new Error(`it holds ${JSON.stringify(text.slice(0, 40))}, not a pid`)
      }
      return pid
    },
    catch: (cause) => new PidFileError({ path, cause, operation: "read" })
  })

/**
 * How far a process's start may follow the write of its PID file: the kernel
 * counts start times in 10 ms ticks, and a process always starts before it
 * can write its own pid.
 */
const START_SLACK_MS = 100

/**
 * Reads the pid in `path` and proves it names the process that wrote it:
 * the start record `write` leaves beside it (`startPath`) names this pid with
 * its current start time. A PID file without one (written by something
 * else) is trusted if the process started before the file was last written
 * (a pid reused after a crash started later) and the file belongs to root or
 * to the user the process runs as. Linux only (it reads /proc); elsewhere it
 * is `read`.
 *
 * @since 0.3.0
 * @category constructors
 */
export const verify = (path: string): Effect.Effect<number, PidFileError | StalePidFile> =>
  Effect.flatMap(read(path), (pid) =>
    Effect.suspend((): Effect.Effect<number, PidFileError | StalePidFile> => {
      if (!Fs.existsSync("/proc/self/stat")) return Effect.succeed(pid)
      let stat: Fs.Stats
      try {
        stat = Fs.statSync(path)
      } catch (cause) {
        return Effect.fail(new PidFileError({ path, cause, operation: "read" }))
      }
      const identity = Procfs.processIdentity(pid)
      if (identity === undefined) {
        return Effect.fail(new StalePidFile({ path, pid, reason: "NotRunning", detail: "" }))
      }
      // Exact and clock-free: the record names this pid with the start time it has now.
      if (proven(path) === pid && (stat.uid === 0 || stat.uid === identity.uid)) return Effect.succeed(pid)
      const record = readStart(path)
      if (record?.pid === pid) {
        return Effect.fail(
          new StalePidFile({
            path,
            pid,
            reason: "Reused",
            detail: `${startPath(path)} records another start time for it`
          })
        )
      }
      if (identity.startedAt > stat.mtimeMs + START_SLACK_MS) {
        return Effect.fail(
          new StalePidFile({
            path,
            pid,
            reason: "Reused",
            detail: `written ${new Date(stat.mtimeMs).toISOString()}, pid started ${
              new Date(identity.startedAt).toISOString()
            }`
          })
        )
      }
      if (stat.uid !== 0 && stat.uid !== identity.uid) {
        return Effect.fail(
          new StalePidFile({
            path,
            pid,
            reason: "Owner",
            detail: `it belongs to uid ${stat.uid} but pid ${pid} runs as uid ${identity.uid}`
          })
        )
      }
      return Effect.succeed(pid)
    }))

/**
 * Removes `path` if it still names `pid`: a service that stops for good takes
 * its PID file with it, and never one a newer generation has written since.
 *
 * @since 0.3.0
 * @category constructors
 */
export const removeIfOwn = (path: string, pid: number = process.pid): Effect.Effect<boolean, PidFileError> =>
  Effect.flatMap(Fx.result(read(path)), (current) =>
    Fx.isFailure(current) || Fx.successOf(current) !== pid
      ? Effect.succeed(false)
      : Effect.try({
        try: () => {
          Fs.rmSync(path, { force: true })
          if (readStart(path)?.pid === pid) Fs.rmSync(startPath(path), { force: true })
          return true
        },
        catch: (cause) => new PidFileError({ path, cause, operation: "remove" })
      }))

const writeAtomic = (path: string, text: string): void => {
  const dir = Path.dirname(path)
  const temp = Path.join(dir, `.${Path.basename(path)}.${process.pid}.${Math.random().toString(36).slice(2, 10)}`)
  // O_EXCL | O_NOFOLLOW: never write through something that already exists at the temporary name.
  const fd = Fs.openSync(
    temp,
    Fs.constants.O_WRONLY | Fs.constants.O_CREAT | Fs.constants.O_EXCL | Fs.constants.O_NOFOLLOW,
    0o644
  )
  try {
    try {
      // The umask may have narrowed the mode; 0644 is what supervisors reading as another user expect.
      Fs.fchmodSync(fd, 0o644)
      Fs.writeSync(fd, text)
    } finally {
      Fs.closeSync(fd)
    }
    Fs.renameSync(temp, path)
  } catch (error) {
    Fs.rmSync(temp, { force: true })
    throw error
  }
}
