/**
 * Upgrade errors carried out of the process: across the runner's IPC channel,
 * which carries JSON (sent as their tag and fields, durations in ms, rebuilt
 * as the same typed errors), and into the outcome record beside the PID file.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as PidFile from "../PidFile.js"
import type { UpgradeError } from "../UpgradeError.js"
import {
  AlreadyUpgraded,
  ChildExited,
  HealthCheckFailed,
  NotReady,
  NotSupported,
  ParentNotExited,
  RolledBack,
  SpawnError,
  StateError,
  Stopped,
  TooManyDescriptors,
  UnregisteredListener,
  UpgradeInProgress,
  UpgradeTimeout
} from "../UpgradeError.js"
import * as Log from "./log.js"

/** @internal */
export type Serialized = { readonly _tag: string } & Record<string, unknown>

/** @internal */
export const serialize = (error: UpgradeError): Serialized => {
  const fields: Record<string, unknown> = { _tag: error._tag }
  for (const [key, value] of Object.entries(error)) {
    fields[key] = Duration.isDuration(value) ? Duration.toMillis(value) : key === "cause" ? String(value) : value
  }
  return fields as Serialized
}

/** @internal */
export const revive = (error: Serialized): UpgradeError => {
  const e = error as any
  switch (error._tag) {
    case "NotSupported":
      return new NotSupported({ platform: e.platform, reason: e.reason })
    case "NotReady":
      return new NotReady({ pid: e.pid })
    case "ParentNotExited":
      return new ParentNotExited({ parentPid: e.parentPid })
    case "UpgradeInProgress":
      return new UpgradeInProgress({ childPid: e.childPid })
    case "AlreadyUpgraded":
      return new AlreadyUpgraded({ childPid: e.childPid })
    case "Stopped":
      return new Stopped({ childPid: e.childPid })
    case "ChildExited":
      return new ChildExited({ pid: e.pid, code: e.code, signal: e.signal })
    case "RolledBack":
      return new RolledBack({ pid: e.pid, code: e.code, signal: e.signal, probation: Duration.millis(e.probation) })
    case "UpgradeTimeout":
      return new UpgradeTimeout({
        pid: e.pid,
        timeout: Duration.millis(e.timeout),
        ...(e.phase === "prepare" ? { phase: "prepare" } : {})
      })
    case "TooManyDescriptors":
      return new TooManyDescriptors({ count: e.count, max: e.max })
    case "UnregisteredListener":
      return new UnregisteredListener({ addresses: e.addresses })
    case "HealthCheckFailed":
      return new HealthCheckFailed({ pid: e.pid, reason: e.reason })
    case "StateError":
      return new StateError({ key: e.key, reason: e.reason, detail: e.detail })
    default:
      return new SpawnError({ command: String(e.command ?? "the runner"), cause: e.cause ?? error._tag })
  }
}

/**
 * Records how an upgrade (or, with `prepared`, a prepare) ended in
 * `<pidFile>.upgrade.json` (`.prepare.json`), for `effect-tableflip upgrade`
 * and `prepare`; a failure to write is logged, never raised.
 *
 * @internal
 */
export const recordOutcome = (
  pidFile: string,
  startedAt: number,
  exit: Exit.Exit<{ readonly pid: number }, UpgradeError>,
  /** An app's generation hands over for good; a runner upgrades again. */
  handsOver: boolean,
  prepared = false
): Effect.Effect<void> =>
  PidFile.writeOutcome(
    pidFile,
    {
      pid: process.pid,
      startedAt,
      endedAt: Date.now(),
      ...(Exit.isSuccess(exit)
        ? prepared
          ? { outcome: "prepared", child: exit.value.pid }
          : { outcome: "upgraded", child: exit.value.pid, handedOver: handsOver }
        : {
          outcome: "failed",
          error: Option.match(Cause.failureOption(exit.cause), {
            onNone: () =>
              Cause.isInterruptedOnly(exit.cause)
                ? { _tag: "Interrupted", message: "interrupted (the process is stopping)" }
                : { _tag: "Defect", message: Cause.pretty(exit.cause).split("\n")[0]! },
            onSome: (error) => ({ _tag: error._tag, message: error.message })
          })
        })
    },
    prepared ? PidFile.prepareOutcomePath : PidFile.outcomePath
  ).pipe(Effect.catchAll((error) => Log.warning(error.message)))
