/**
 * The library's log lines: one line each, naming the process that wrote it
 * in the message itself (`generation 2 (pid 1234): ready`), so they read the
 * same under whatever logger the app chose. Effect's pretty logger prints
 * annotations on lines of their own, which interleave badly when two
 * generations share a terminal; JSON loggers get the same text in `message`.
 *
 * @internal
 */
import type * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"

/**
 * Who this process is: one Upgrader (or runner) per process sets it once it knows. Read when a
 * line is written, not when this module loads: in a V8 start-up snapshot the module loaded in
 * the process that built the snapshot, whose pid that would be.
 */
let name: string | undefined

const who = (): string => name === undefined ? `pid ${process.pid}` : `${name} (pid ${process.pid})`

/** Names this process in every later line: `generation 2 (pid 1234)`, `runner (pid 99)`. */
export const identify = (as: string): void => {
  name = as
}

/** @internal */
export const debug = (message: string): Effect.Effect<void> =>
  Effect.suspend(() => Effect.logDebug(`${who()}: ${message}`))

/** @internal */
export const info = (message: string): Effect.Effect<void> =>
  Effect.suspend(() => Effect.logInfo(`${who()}: ${message}`))

/** @internal */
export const warning = (message: string): Effect.Effect<void> =>
  Effect.suspend(() => Effect.logWarning(`${who()}: ${message}`))

/** An error line; a cause, if any, follows it as the logger renders causes. */
export const error = (message: string, cause?: Cause.Cause<unknown>): Effect.Effect<void> =>
  Effect.suspend(() =>
    cause === undefined ? Effect.logError(`${who()}: ${message}`) : Effect.logError(`${who()}: ${message}`, cause)
  )
