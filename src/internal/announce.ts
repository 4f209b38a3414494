/**
 * What a service tells systemd, by name: one place for the sd_notify fields
 * and STATUS texts that the lifecycle (an app generation) and the runner
 * send at the same moments of an upgrade.
 *
 * @internal
 */
import type * as Effect from "effect/Effect"
import * as Notify from "./notify.js"

/**
 * The announcements; each never fails or waits (see `Notify.Notify`).
 *
 * @internal
 */
export interface Announcer {
  /** This process serves `generation` and is the main pid. */
  readonly ready: (generation: number) => Effect.Effect<void>
  /** An upgrade to generation `next` has begun (`systemctl reload` waits for the next `READY`). */
  readonly reloading: (next: number) => Effect.Effect<void>
  /** Generation `generation`, pid `pid`, serves now. */
  readonly upgraded: (pid: number, generation: number) => Effect.Effect<void>
  /** The upgrade failed; `generation` serves on. The runner gives no reason. */
  readonly failed: (generation: number, reason?: string) => Effect.Effect<void>
  /** The service is stopping; the runner names the signal that stops it. */
  readonly stopping: (signal?: string) => Effect.Effect<void>
}

/**
 * An announcer for `role`: an app `"generation"` hands systemd's main pid to
 * its successor at an upgrade; the `"runner"` stays the main pid throughout
 * and names the pid that serves in its STATUS instead.
 *
 * @internal
 */
export const make = (role: "generation" | "runner", notify: Notify.Notify = Notify.make()): Announcer => ({
  ready: (generation) =>
    notify(["READY", "1"], ["MAINPID", String(process.pid)], ["STATUS", `generation ${generation} serving`]),
  reloading: (next) =>
    notify(["RELOADING", "1"], ["MONOTONIC_USEC", Notify.monotonicUsec()], ["STATUS", `starting generation ${next}`]),
  upgraded: (pid, generation) =>
    role === "runner"
      ? notify(["READY", "1"], ["STATUS", `generation ${generation} serving (pid ${pid})`])
      : notify(["MAINPID", String(pid)], ["READY", "1"], ["STATUS", `generation ${generation} serving`]),
  failed: (generation, reason) =>
    notify(["READY", "1"], [
      "STATUS",
      reason === undefined
        ? `generation ${generation} serving; the upgrade failed`
        : `generation ${generation} serving; upgrade failed: ${reason}`
    ]),
  stopping: (signal) =>
    notify(["STOPPING", "1"], ["STATUS", signal === undefined ? "stopping" : `stopping on ${signal}`])
})
