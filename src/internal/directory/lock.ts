/**
 * The takeover lock, `upgrade.lock`: one process takes over at a time. It
 * holds the lock from its start until it is ready (or gone: the kernel drops
 * a dead process's flock).
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import { DirectoryError } from "../../UpgradeError.js"
import * as Fx from "../fx.js"
import type * as Native from "../native.js"

/** The lock, held. */
export interface Lock {
  /** Lets it go; again does nothing. The enclosing scope lets it go too. */
  readonly release: Effect.Effect<void>
}

/** Waits up to `timeout` for the lock at `path`. Polled: flock would block the event loop. */
export const take = (
  addon: Native.Addon,
  path: string,
  timeout: Duration.Duration
): Effect.Effect<Lock, DirectoryError, Scope.Scope> => {
  const tryLock = Effect.try({
    try: () => addon.lock(path),
    catch: (error) => new DirectoryError({ path, reason: "Locked", detail: (error as Error).message })
  })
  const poll: Effect.Effect<number, DirectoryError> = Effect.flatMap(
    tryLock,
    (fd) => fd !== null ? Effect.succeed(fd) : Effect.andThen(Effect.sleep(Duration.millis(50)), poll)
  )
  const acquire = poll.pipe(
    Fx.timeoutFail({
      duration: timeout,
      onTimeout: () =>
        new DirectoryError({
          path,
          reason: "Locked",
          detail: `another process has been taking over for ${Duration.format(timeout)}`
        })
    })
  )
  // A scope of its own, closed at `ready` or with the enclosing one, whichever comes first
  // (closing a scope twice does nothing).
  return Effect.gen(function*() {
    const scope = yield* Fx.forkScope(yield* Effect.scope)
    yield* Effect.acquireRelease(acquire, (fd) => Effect.sync(() => Fs.closeSync(fd))).pipe(Fx.inScope(scope))
    return { release: Scope.close(scope, Exit.void) }
  })
}
