/**
 * systemd's notify protocol (sd_notify): newline-separated `KEY=value`
 * datagrams to the unix socket in NOTIFY_SOCKET. Sent from this process
 * through the native addon, so the sender is the pid systemd knows as main
 * (NotifyAccess=main works); without the addon, through the systemd-notify
 * tool, whose messages systemd accepts only with NotifyAccess=all.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as ChildProcess from "node:child_process"
import * as Fx from "./fx.js"
import * as Log from "./log.js"
import * as Native from "./native.js"

/**
 * Sends one notify message of `KEY=value` fields; does nothing when NOTIFY_SOCKET is unset, and
 * never fails or waits: a socket nobody reads (a full queue) drops the message. A failure is
 * logged as a warning, once for each kind (errno).
 *
 * @internal
 */
export type Notify = (...fields: ReadonlyArray<readonly [string, string]>) => Effect.Effect<void>

/** CLOCK_MONOTONIC in microseconds, which is what Node's hrtime reads on Linux. */
export const monotonicUsec = (): string => String(process.hrtime.bigint() / 1000n)

/** @internal */
export const make = (): Notify => {
  const path = process.env.NOTIFY_SOCKET
  if (path === undefined || path === "") return () => Effect.void
  const warned = new Set<string>()
  const send = (message: string, fields: ReadonlyArray<readonly [string, string]>) => {
    const { addon, reason } = Native.load()
    if (addon !== undefined) return addon.notify(path, message)
    const result = ChildProcess.spawnSync("systemd-notify", fields.map(([key, value]) => `${key}=${value}`), {
      stdio: "ignore"
    })
    if (result.status !== 0) {
      throw new Error(`${reason}, and systemd-notify ${result.error?.message ?? `exited with ${result.status}`}`)
    }
  }
  return (...fields) =>
    Effect.try({
      try: () => send(fields.map(([key, value]) => `${key}=${value}`).join("\n"), fields),
      catch: (error) => error
    }).pipe(
      Fx.catchAll((error) => {
        const code = (error as NodeJS.ErrnoException).code ?? "other"
        if (warned.has(code)) return Effect.void
        warned.add(code)
        const hint = code === "EAGAIN"
          ? " (its queue is full: nobody reads the socket; messages are dropped, the service carries on)"
          : ""
        return Log.warning(`cannot notify systemd at ${path}: ${String(error)}${hint}`)
      })
    )
}
