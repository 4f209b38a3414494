/**
 * The coordination directory's files, and the checks made before trusting
 * them: the directory itself (and every one above it) must be writable by
 * nobody else, and a recorded owner counts only if it is provably alive.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as PidFile from "../../PidFile.js"
import { DirectoryError } from "../../UpgradeError.js"
import * as Procfs from "../procfs.js"

/** The paths in the directory (see `directory.ts`). */
export interface Paths {
  readonly dir: string
  /** flock'd by the process taking over, until it is ready. */
  readonly lock: string
  /** Served by the owner. */
  readonly owner: string
  /** The owner's pid, for people and tools. */
  readonly ownerPid: string
  /** The owner's pid and start time, which together name one process. */
  readonly ownerStart: string
}

/** The paths of the directory `dir` (absolute). */
export const paths = (dir: string): Paths => {
  const ownerPid = Path.join(dir, "owner.pid")
  return {
    dir,
    lock: Path.join(dir, "upgrade.lock"),
    owner: Path.join(dir, "owner.sock"),
    ownerPid,
    ownerStart: PidFile.startPath(ownerPid)
  }
}

/** Records this process as the owner: owner.start (the proof a live pid is still the owner), then owner.pid. */
export const recordOwner = (paths: Paths) => PidFile.write(paths.ownerPid)

/**
 * The pid in `owner.pid` if it is, provably, the owner that wrote it (`PidFile.proven`: its start
 * record `owner.start` names a live process with that start time) and runs as this user. Anything
 * else (a missing or malformed record, a dead pid, a pid reused by another process after a crash,
 * another user's process or record) is stale.
 */
export const provenOwner = (ownerPidPath: string, uid: number): number | undefined => {
  const pid = PidFile.proven(ownerPidPath)
  return pid !== undefined && pid !== process.pid && Procfs.processUid(pid) === uid ? pid : undefined
}

/**
 * The directory must be ours and writable by nobody else: whoever can write there can take the
 * sockets. So must every directory above it (as written, and as symlinks resolve): whoever may
 * rename an ancestor can put a directory of their own in its place. An ancestor passes if it
 * belongs to this user or root and is not writable by group or others, unless its sticky bit is
 * set (as on /tmp: others may add entries there but not rename or remove ours).
 */
export const checkDirectory = (dir: string) =>
  Effect.suspend(() => {
    const fail = (path: string, detail: string) =>
      Effect.fail(new DirectoryError({ path, reason: "Permissions", detail }))
    const uid = process.geteuid?.() ?? 0
    let stat: Fs.Stats
    let real: string
    try {
      Fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
      stat = Fs.lstatSync(dir)
      real = Fs.realpathSync(dir)
    } catch (error) {
      return fail(dir, `cannot use the directory: ${(error as Error).message}`)
    }
    if (!stat.isDirectory()) return fail(dir, "is not a directory (a symlink is refused too)")
    if (stat.uid !== uid) return fail(dir, `is owned by uid ${stat.uid}, not by this process's uid ${uid}; chown it`)
    if ((stat.mode & 0o022) !== 0) {
      return fail(
        dir,
        `is writable by its group or by everyone (mode ${(stat.mode & 0o777).toString(8)}); chmod go-w it`
      )
    }
    const ancestors = new Set<string>()
    for (const start of [dir, real]) {
      for (let path = Path.dirname(start); !ancestors.has(path); path = Path.dirname(path)) ancestors.add(path)
    }
    for (const ancestor of ancestors) {
      let above: Fs.Stats
      try {
        above = Fs.statSync(ancestor)
      } catch (error) {
        return fail(ancestor, `cannot check a directory above ${dir}: ${(error as Error).message}`)
      }
      if (above.uid !== uid && above.uid !== 0) {
        return fail(
          ancestor,
          `is owned by uid ${above.uid}, neither this process's uid ${uid} nor root, and could replace ${dir}; ` +
            "put the directory under one owned by this user or root"
        )
      }
      if ((above.mode & 0o022) !== 0 && (above.mode & 0o1000) === 0) {
        return fail(
          ancestor,
          `is writable by its group or by everyone without the sticky bit (mode ${
            (above.mode & 0o7777).toString(8)
          }), so others could replace ${dir}; chmod go-w (or +t) it`
        )
      }
    }
    return Effect.void
  })
