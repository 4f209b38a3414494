/**
 * What `Upgrader.make`, `Upgrader.launch` and `Upgrader.readyWhen` do, given
 * the lifecycle they act on; the public module keeps the types and docs.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { PidFileError } from "../UpgradeError.js"
import { HealthCheckFailed } from "../UpgradeError.js"
import type { ExitReason, Upgrader } from "../Upgrader.js"
import * as Fx from "./fx.js"
import type { Lifecycle } from "./lifecycle.js"
import * as Log from "./log.js"

/** The public face of a lifecycle: its registry stays behind, with `Fds`. @internal */
export const service = (lifecycle: Lifecycle): Fx.ShapeOf<Upgrader> => ({
  pid: lifecycle.pid,
  generation: lifecycle.generation,
  hasParent: lifecycle.hasParent,
  ready: lifecycle.ready,
  upgrade: lifecycle.upgrade,
  prepare: lifecycle.prepare,
  exit: lifecycle.exit,
  stop: lifecycle.stop,
  waitForParent: lifecycle.waitForParent,
  offerState: lifecycle.offerState,
  inheritedState: lifecycle.inheritedState,
  unready: lifecycle.unready
})

/** @internal */
export const launch = <ROut, E, RIn, E2, R2>(
  upgrader: Fx.ShapeOf<Upgrader>,
  self: Layer.Layer<ROut, E, RIn>,
  options: {
    readonly readyWhen?: Effect.Effect<unknown, E2, R2> | undefined
    readonly readyTimeout?: Fx.DurationInput | undefined
  }
): Effect.Effect<ExitReason, E | PidFileError | HealthCheckFailed, RIn | R2> =>
  Effect.scoped(Effect.gen(function*() {
    yield* Layer.build(self)
    yield* options.readyWhen === undefined
      ? upgrader.ready
      : readyWhen(upgrader, options.readyWhen, options.readyTimeout)
    const reason = yield* upgrader.exit
    yield* Log.info(`${reason}: draining`)
    return reason
  }))

/** @internal */
export const readyWhen = <E, R>(
  upgrader: Fx.ShapeOf<Upgrader>,
  check: Effect.Effect<unknown, E, R>,
  timeoutInput: Fx.DurationInput | undefined
): Effect.Effect<void, HealthCheckFailed | PidFileError, R> =>
  Effect.suspend(() => {
    const timeout = Fx.decodeDuration(timeoutInput ?? Duration.seconds(30))
    return check.pipe(
      Fx.timeoutFail({ duration: timeout, onTimeout: () => `no answer within ${Duration.format(timeout)}` }),
      Fx.catchAllCause((cause) => {
        const reason = describeCause(Cause.squash(cause))
        return Effect.andThen(upgrader.unready(reason), new HealthCheckFailed({ pid: upgrader.pid, reason }))
      }),
      Effect.andThen(upgrader.ready)
    )
  }).pipe(Effect.withSpan("Upgrader.readyWhen"))

const describeCause = (error: unknown): string =>
  typeof error === "string"
    ? error
    : error instanceof Error || (typeof error === "object" && error !== null && "message" in error)
    ? String((error as { message: unknown }).message)
    : String(error)
