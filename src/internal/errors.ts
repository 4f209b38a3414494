/**
 * Upgrade errors carried out of the process: across the runner's IPC channel,
 * which carries JSON (sent as their tag and fields, durations in ms, rebuilt
 * as the same typed errors from a registry of their classes), and into the
 * outcome record beside the PID file.
 *
 * Not `Schema.TaggedError`: the errors are `Data.TaggedError`s in the public
 * API, and this module loads with the lifecycle before `ready`, where loading
 * Schema costs a generation ~160 ms of start-up (issue 16).
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
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
import * as Fx from "./fx.js"
import * as Log from "./log.js"

/** @internal */
export type Serialized = { readonly _tag: string } & Record<string, unknown>

/** @internal */
export const serialize = (error: UpgradeError): Serialized => {
  const fields: Record<string, unknown> = { _tag: error._tag }
  for (const [key, value] of Object.entries(error)) {
    fields[key] = Duration.isDuration(value) ? Duration.toMillis(value) : value
  }
  // `Data.Error` keeps `cause` as the standard, non-enumerable property: sent as the text the message shows.
  if ("cause" in error && error.cause !== undefined) {
    fields.cause = error.cause instanceof Error ? error.cause.message : String(error.cause)
  }
  return fields as Serialized
}

/**
 * The classes an upgrade can fail with, by tag. Typed from the `UpgradeError`
 * union, so a new member missing here does not compile. `SpawnError` is
 * revived apart: it is also what an error of a tag this build does not know
 * (from a newer runner) becomes.
 */
const classes: {
  readonly [E in Exclude<UpgradeError, SpawnError> as E["_tag"]]: new(fields: any) => E
} = {
  NotSupported,
  NotReady,
  ParentNotExited,
  UpgradeInProgress,
  AlreadyUpgraded,
  Stopped,
  ChildExited,
  HealthCheckFailed,
  StateError,
  RolledBack,
  UpgradeTimeout,
  TooManyDescriptors,
  UnregisteredListener
}

type DurationField<E> = { readonly [K in keyof E]-?: E[K] extends Duration.Duration ? K : never }[keyof E]

/**
 * The fields that travel as milliseconds, by tag; typed so that a new
 * Duration field missing here does not compile.
 */
const durations: {
  readonly [E in UpgradeError as [DurationField<E>] extends [never] ? never : E["_tag"]]: ReadonlyArray<
    DurationField<E>
  >
} = {
  RolledBack: ["probation"],
  UpgradeTimeout: ["timeout"]
}

const isKnown = (tag: string): tag is keyof typeof classes => Object.hasOwn(classes, tag)

/** Rebuilds the typed error `serialize` sent, with its fields; a tag this build does not know becomes a `SpawnError`. */
export const revive = (error: Serialized): UpgradeError => {
  const { _tag: tag, ...fields } = error
  if (!isKnown(tag)) {
    return new SpawnError({ command: String(fields.command ?? "the runner"), cause: fields.cause ?? tag })
  }
  for (const key of (durations as Readonly<Record<string, ReadonlyArray<string>>>)[tag] ?? []) {
    fields[key] = Duration.millis(fields[key] as number)
  }
  return new classes[tag](fields)
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
          error: Option.match(Fx.failureOption(exit.cause), {
            onNone: () =>
              Fx.isInterruptedOnly(exit.cause)
                ? { _tag: "Interrupted", message: "interrupted (the process is stopping)" }
                : { _tag: "Defect", message: Cause.pretty(exit.cause).split("\n")[0]! },
            onSome: (error) => ({ _tag: error._tag, message: error.message })
          })
        })
    },
    prepared ? PidFile.prepareOutcomePath : PidFile.outcomePath
  ).pipe(Fx.catchAll((error) => Log.warning(error.message)))
