/**
 * Waiting on a started child: for its `ready` (and its probation), or for a
 * prepared one to park, raced with its exit, the timeout and `stop`.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type { UpgradeError } from "../../UpgradeError.js"
import { ChildExited, HealthCheckFailed, RolledBack, Stopped, UpgradeTimeout } from "../../UpgradeError.js"
import * as Fx from "../fx.js"
import * as Log from "../log.js"
import type * as Protocol from "../protocol.js"
import type { Handover } from "../registry.js"
import type { Child } from "../spawn.js"

/**
 * How long a child whose channel broke while it was sent its sockets has to
 * exit, so that its exit code, not the broken pipe, is the error.
 */
const BROKEN_CHANNEL_GRACE = Duration.seconds(2)

/**
 * Hands the child its sockets and state, then waits for it to say it is ready
 * within `timeout` (counted from the first send), then to stay alive through
 * `probation`. The whole of it is raced with the child's exit and with `stop`,
 * so a child that dies, hangs or stops at any point, even before Node has
 * delivered the first socket, ends it. Fails with `UpgradeTimeout`,
 * `ChildExited` (before ready), `RolledBack` (after), `HealthCheckFailed`,
 * `SpawnError` (the channel broke and the child lives on), or `Stopped` once
 * `stop` completes. The caller kills the child on failure.
 *
 * @internal
 */
export const awaitReady = (
  child: Child,
  options: {
    readonly timeout: Duration.Duration
    readonly probation: Duration.Duration
    readonly stop: Deferred.Deferred<void>
    /** A prepared child: the manifest its `go` carries, and what to hand it after. */
    readonly go?: { readonly manifest: Protocol.Manifest; readonly handover: Handover } | undefined
  }
): Effect.Effect<void, UpgradeError> =>
  (options.go === undefined ? child.sendSockets : child.sendGo(options.go.manifest, options.go.handover)).pipe(
    // A broken channel most often means the child is dying: its exit, raced below, says how.
    Fx.catchAll((error) => Effect.andThen(Effect.sleep(BROKEN_CHANNEL_GRACE), Effect.fail(error))),
    Effect.andThen(Deferred.await(child.ready)),
    Effect.raceFirst(
      Effect.andThen(Effect.sleep(options.timeout), new UpgradeTimeout({ pid: child.pid, timeout: options.timeout }))
    ),
    Effect.andThen(
      Duration.isZero(options.probation) ? Effect.void : Log.info(
        `the next generation (pid ${child.pid}) is ready; probation for ${Duration.format(options.probation)}`
      ).pipe(Effect.andThen(Effect.sleep(options.probation)))
    ),
    Effect.raceFirst(Effect.flatMap(
      Deferred.await(child.exited),
      ({ code, signal }) =>
        Effect.flatMap(
          Deferred.isDone(child.ready),
          (wasReady): Effect.Effect<never, RolledBack | ChildExited> =>
            wasReady
              ? new RolledBack({ pid: child.pid, code, signal, probation: options.probation })
              : new ChildExited({ pid: child.pid, code, signal })
        )
    )),
    Effect.raceFirst(Effect.flatMap(
      Deferred.await(child.unready),
      (reason) => new HealthCheckFailed({ pid: child.pid, reason })
    )),
    Effect.raceFirst(Effect.andThen(Deferred.await(options.stop), new Stopped({ childPid: child.pid })))
  )

/**
 * Waits, within `timeout`, for a prepared child to say it has loaded and
 * parked, raced with its exit and with `stop`. Fails with `UpgradeTimeout`,
 * `ChildExited` or `Stopped`; the caller kills the child on failure.
 *
 * @internal
 */
export const awaitParked = (
  child: Child,
  options: { readonly timeout: Duration.Duration; readonly stop: Deferred.Deferred<void> }
): Effect.Effect<void, UpgradeError> =>
  Deferred.await(child.parked).pipe(
    Effect.raceFirst(
      Effect.andThen(
        Effect.sleep(options.timeout),
        new UpgradeTimeout({ pid: child.pid, timeout: options.timeout, phase: "prepare" })
      )
    ),
    Effect.raceFirst(Effect.flatMap(
      Deferred.await(child.exited),
      ({ code, signal }) => new ChildExited({ pid: child.pid, code, signal })
    )),
    Effect.raceFirst(Effect.andThen(Deferred.await(options.stop), new Stopped({ childPid: child.pid })))
  )
