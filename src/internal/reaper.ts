/**
 * The runner as PID 1 (in a container): the app's orphans are re-parented to
 * it, and nothing else would reap them. libuv reaps the children it spawned;
 * this reaps the rest, on SIGCHLD, through the native addon (Node has no
 * waitpid).
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import * as Log from "./log.js"
import * as Native from "./native.js"
import * as Procfs from "./procfs.js"

/**
 * While the scope is open and this process is PID 1, reaps orphans on each
 * SIGCHLD, leaving alone the children in `live` (libuv reaps those). Without
 * the addon it warns once that orphans stay zombies.
 *
 * @internal
 */
export const install = (live: ReadonlySet<{ readonly pid: number }>): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function*() {
    if (process.pid !== 1) return
    const reaper = () => reapOrphans(live)
    yield* Effect.acquireRelease(
      Effect.sync(() => process.on("SIGCHLD", reaper)),
      () => Effect.sync(() => process.off("SIGCHLD", reaper))
    )
    if (Native.load().addon === undefined) {
      yield* Log.warning(
        `running as PID 1 without the native addon, so orphans of the app stay zombies: ${Native.load().reason}`
      )
    }
  })

/**
 * Reaps zombies re-parented to this process that it did not spawn (libuv
 * reaps its own).
 *
 * @internal
 */
export const reapOrphans = (live: ReadonlySet<{ readonly pid: number }>): void => {
  const { addon } = Native.load()
  if (addon === undefined) return
  const ours = new Set([...live].map((child) => child.pid))
  let entries: ReadonlyArray<string>
  try {
    entries = Fs.readdirSync("/proc")
  } catch {
    return // EMFILE, say: the next SIGCHLD tries again.
  }
  for (const entry of entries) {
    const pid = Number(entry)
    if (!Number.isInteger(pid) || ours.has(pid)) continue
    const stat = Procfs.processStat(pid)
    if (stat?.state !== "Z" || stat.ppid !== process.pid) continue
    try {
      addon.reap(pid)
    } catch {
      // Reaped meanwhile (ECHILD).
    }
  }
}
