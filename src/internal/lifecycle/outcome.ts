/**
 * How an upgrade or a prepare ended, told to everyone who asks: the state
 * machine, systemd (`Announce`), the PID file's outcome file (for
 * `effect-tableflip upgrade` and `prepare`), the metrics and the log.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Metric from "effect/Metric"
import * as Metrics from "../../Metrics.js"
import * as PidFile from "../../PidFile.js"
import type { UpgradeError } from "../../UpgradeError.js"
import { AlreadyUpgraded, UpgradeInProgress } from "../../UpgradeError.js"
import type { Prepared, Upgraded } from "../../Upgrader.js"
import * as UpgradeErrors from "../errors.js"
import * as Fx from "../fx.js"
import * as Log from "../log.js"
import { apply, type Deps } from "./deps.js"

/**
 * Records an upgrade's outcome for `effect-tableflip upgrade`, which
 * signalled this process and waits for the answer.
 *
 * @internal
 */
export const recordUpgrade = (
  deps: Deps,
  startedAt: number,
  exit: Exit.Exit<Upgraded, UpgradeError>
): Effect.Effect<void> =>
  deps.pidFile === undefined || folded(exit)
    ? Effect.void
    : UpgradeErrors.recordOutcome(deps.pidFile, startedAt, exit, true)

// Folded signals: the attempt in flight, or the one that already succeeded, has the answer.
const folded = (exit: Exit.Exit<Upgraded, UpgradeError>) =>
  Exit.isFailure(exit) &&
  (Cause.squash(exit.cause) instanceof UpgradeInProgress || Cause.squash(exit.cause) instanceof AlreadyUpgraded)

/**
 * Records a prepare's outcome for `effect-tableflip prepare`.
 *
 * @internal
 */
export const recordPrepare = (
  deps: Deps,
  startedAt: number,
  exit: Exit.Exit<Prepared, UpgradeError>
): Effect.Effect<void> =>
  deps.pidFile === undefined ? Effect.void : UpgradeErrors.recordOutcome(deps.pidFile, startedAt, exit, false, true)

/**
 * Moves the machine on when an attempt ends: on interruption too, or every
 * later upgrade would find one in progress. `tell` gives the caller its
 * answer once the machine has moved, and before `exit` completes.
 *
 * @internal
 */
export const settle = (
  deps: Deps,
  exit: Exit.Exit<Upgraded, UpgradeError>,
  tell: Effect.Effect<void>
): Effect.Effect<void> =>
  Exit.isFailure(exit)
    ? Effect.andThen(failed(deps, exit.cause), tell)
    : deps.successor.handsOverOnSuccess
    ? handedOver(deps, exit.value.pid, tell)
    : tell

const handedOver = (deps: Deps, pid: number, tell: Effect.Effect<void>) =>
  Effect.andThen(
    deps.announce.upgraded(pid, deps.generation + 1),
    Effect.ignore(apply(deps, { _tag: "Succeeded", childPid: pid }))
  ).pipe(
    Effect.andThen(tell),
    Effect.andThen(Deferred.succeed(deps.exitReason, "upgraded")),
    Effect.andThen(Log.info(`upgraded to generation ${deps.generation + 1} (pid ${pid}); draining`))
  )

const failed = (deps: Deps, cause: Cause.Cause<UpgradeError>) =>
  Effect.ignore(apply(deps, { _tag: "Failed" })).pipe(
    Effect.andThen(reclaimPidFile(deps)),
    Effect.andThen(deps.announce.failed(deps.generation, String(Cause.squash(cause))))
  )

// A new generation writes the PID file just before it says it is ready; if it died right
// there, the file names a dead process while this one serves on.
const reclaimPidFile = ({ pidFile }: Deps) =>
  pidFile === undefined ? Effect.void : PidFile.read(pidFile).pipe(
    Effect.flatMap((pid) => pid === process.pid ? Effect.void : PidFile.write(pidFile)),
    Fx.catchAll((error) => Log.warning(error.message))
  )

/**
 * Counts the upgrade by outcome and records how long it took.
 *
 * @internal
 */
export const metered = <A>(self: Effect.Effect<A, UpgradeError>): Effect.Effect<A, UpgradeError> =>
  Effect.timed(self).pipe(
    Effect.tap(([duration]) => Metric.update(Metrics.upgradeDuration, Duration.toMillis(duration))),
    Effect.map(([, value]) => value),
    Effect.tap(() => Fx.incrementTagged(Metrics.upgrades, "outcome", "upgraded")),
    Effect.tapError((error) => Fx.incrementTagged(Metrics.upgrades, "outcome", error._tag))
  )
