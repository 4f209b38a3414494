/**
 * The Effect 4 implementation of `fx.ts` (same exports; see there). The Effect 4 build maps
 * `./fx.js` to this file; the Effect 3 build never compiles it (tsconfig.build.json excludes it).
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import type * as ConfigModule from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import type * as LoggerModule from "effect/Logger"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Result_ from "effect/Result"
import * as Runtime from "effect/Runtime"
import * as Scope from "effect/Scope"
import * as Semaphore_ from "effect/Semaphore"

/** @internal */
export const effectMajor = 4 as const

/** @internal */
export type Result<A, E> = Result_.Result<A, E>
/** @internal */
export type Success<A, E> = Result_.Success<A, E>
/** @internal */
export type Failure<A, E> = Result_.Failure<A, E>
/** @internal */
export const succeed: <A>(value: A) => Result<A, never> = Result_.succeed
/** @internal */
export const fail: <E>(error: E) => Result<never, E> = Result_.fail
/** @internal */
export const isSuccess: <A, E>(self: Result<A, E>) => self is Success<A, E> = Result_.isSuccess
/** @internal */
export const isFailure: <A, E>(self: Result<A, E>) => self is Failure<A, E> = Result_.isFailure
/** @internal */
export const successOf = <A, E>(self: Success<A, E>): A => self.success
/** @internal */
export const failureOf = <A, E>(self: Failure<A, E>): E => self.failure
/** @internal */
export const mapResult = <A, E, B>(self: Result<A, E>, f: (a: A) => B): Result<B, E> => Result_.map(self, f)
/** @internal */
export const matchResult = <A, E, B, C = B>(
  self: Result<A, E>,
  cases: { readonly onSuccess: (a: A) => B; readonly onFailure: (e: E) => C }
): B | C => Result_.match(self, cases)
/** @internal */
export const tryResult = <A>(f: () => A): Result<A, unknown> => Result_.try(f)
/** @internal */
export const fromResult = <A, E>(self: Result<A, E>): Effect.Effect<A, E> =>
  Result_.match(self, { onFailure: Effect.fail, onSuccess: Effect.succeed })

/** @internal */
export const callback: <A, E = never, R = never>(
  register: (
    resume: (effect: Effect.Effect<A, E, R>) => void,
    signal: AbortSignal
  ) => void | Effect.Effect<void, never, R>
) => Effect.Effect<A, E, R> = Effect.callback
/** @internal */
export const catchAll: <E, A2, E2, R2>(
  f: (e: E) => Effect.Effect<A2, E2, R2>
) => <A, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A2 | A, E2, R2 | R> = Effect.catch
/** @internal */
export const forkDetach = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<Fiber.Fiber<A, E>, never, R> =>
  Effect.forkDetach(self)
/** @internal */
export const timeoutFail =
  <E1>(options: { readonly duration: Duration.Input; readonly onTimeout: () => E1 }) =>
  <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E | E1, R> =>
    Effect.timeoutOrElse(self, { duration: options.duration, orElse: () => Effect.fail(options.onTimeout()) })
/** @internal */
export const inScope =
  (scope: Scope.Scope) => <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, Exclude<R, Scope.Scope>> =>
    Scope.provide(scope)(self)
/** @internal */
export const timeoutTo = <A, B, B1>(
  options: { readonly duration: DurationInput; readonly onSuccess: (a: A) => B; readonly onTimeout: () => B1 }
) =>
<E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<B | B1, E, R> =>
  Effect.map(
    Effect.timeoutOption(self, options.duration),
    Option.match({ onNone: options.onTimeout, onSome: options.onSuccess })
  )
/** @internal */
export const timeoutTag = "TimeoutError" as const
/** @internal */
export const catchAllCause: <E, A2, E2, R2>(
  f: (cause: Cause.Cause<E>) => Effect.Effect<A2, E2, R2>
) => <A, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A2 | A, E2, R2 | R> = Effect.catchCause
/** @internal */
export const catchAllDefect: <A2, E2, R2>(
  f: (defect: unknown) => Effect.Effect<A2, E2, R2>
) => <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A2 | A, E2 | E, R2 | R> = Effect.catchDefect
/** @internal */
export const result: <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<Result<A, E>, never, R> = Effect.result
/** @internal */
export const fork = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<RunningFiber<A, E>, never, R> =>
  Effect.forkChild(self)
/** @internal */
export const forkScope = (scope: Scope.Scope): Effect.Effect<Scope.Closeable> => Scope.fork(scope, "sequential")
/**
 * Effect 3's `Exit.isInterrupted` (a failure whose cause is interruption only). Effect 4 has
 * `hasInterrupts`, which is also true for a failure that was interrupted on top of an error.
 * @internal
 */
export const isInterrupted = <A, E>(self: Exit.Exit<A, E>): boolean =>
  Exit.isFailure(self) && self.cause.reasons.length > 0 && self.cause.reasons.every((r) => r._tag === "Interrupt")

/** Effect 3's `Cause.isFailType`: exactly one reason, a typed failure. @internal */
export const isFailType = <E>(self: Cause.Cause<E>): boolean =>
  self.reasons.length === 1 && Cause.isFailReason(self.reasons[0]!)
/** @internal */
export const failureOption: <E>(self: Cause.Cause<E>) => Option.Option<E> = Cause.findErrorOption
/** @internal */
export const isInterruptedOnly: <E>(self: Cause.Cause<E>) => boolean = Cause.hasInterruptsOnly

/**
 * Unlike Effect 3, the Deferred's waiters (like any `callback`'s resume) run inside this call,
 * before the completing fiber goes on; code after a completion must not count on running first.
 * @internal
 */
export const doneUnsafe = <A, E>(self: Deferred.Deferred<A, E>, effect: Effect.Effect<A, E>): void =>
  void Deferred.doneUnsafe(self, effect)
/** @internal */
export const makeDeferredUnsafe = <A, E = never>(): Deferred.Deferred<A, E> => Deferred.makeUnsafe<A, E>()
/** @internal */
export const offerUnsafe = <A>(self: Queue.Enqueue<A>, value: A): boolean => Queue.offerUnsafe(self, value)

/** @internal */
export type DurationInput = Duration.Input
/** @internal */
export const decodeDuration: (input: DurationInput) => Duration.Duration = Duration.fromInputUnsafe
/** @internal */
export type Semaphore = Semaphore_.Semaphore
/** @internal */
export const makeSemaphore: (permits: number) => Effect.Effect<Semaphore> = Semaphore_.make
/** @internal */
export const makeSemaphoreUnsafe: (permits: number) => Semaphore = Semaphore_.makeUnsafe
/** @internal */
export type RunningFiber<A, E> = Fiber.Fiber<A, E>
/** @internal */
export const fromNullable: <A>(value: A) => Option.Option<NonNullable<A>> = Option.fromNullishOr

/** @internal */
export type ConfigError = ConfigModule.ConfigError
/** @internal */
export const configString = (Config: typeof ConfigModule, name: string): ConfigModule.Config<string> =>
  Config.String(name)
/** Effect 4's Config does not name the variable in a refinement's error: the message does. @internal */
export const configRefine =
  <A, B>(Config: typeof ConfigModule, name: string, f: (a: A) => Result<B, string>) =>
  (self: ConfigModule.Config<A>): ConfigModule.Config<B> =>
    Config.mapEffect(self, (a) =>
      Result_.match(f(a), {
        onSuccess: Effect.succeed,
        onFailure: (message) =>
          Effect.fail(new Config.ConfigError(new ConfigProvider.SourceError({ message: `${name}: ${message}` })))
      }))
/** @internal */
export const consoleLoggers = (
  Logger: typeof LoggerModule
): Record<"pretty" | "logfmt" | "json", Layer.Layer<never>> => ({
  pretty: Logger.layer([Logger.consolePretty()]),
  logfmt: Logger.layer([Logger.consoleLogFmt]),
  json: Logger.layer([Logger.consoleJson])
})

/** @internal */
export const incrementTagged = (counter: Metric.Counter<number>, key: string, value: string): Effect.Effect<void> =>
  Metric.update(Metric.withAttributes(counter, { [key]: value }), 1)

/** @internal */
export type ShapeOf<Instance> = Instance extends { readonly Service: infer S } ? S : never
/** @internal */
export const Tag = <Self, Shape>() => <const Key extends string>(key: Key) => Context.Service<Self, Shape>()(key)

/** @internal */
export const layerScoped = Layer.effect
/** @internal */
export const layerScopedContext: <A, E, R>(
  effect: Effect.Effect<Context.Context<A>, E, R>
) => Layer.Layer<A, E, Exclude<R, Scope.Scope>> = Layer.effectContext
/** @internal */
export const layerScopedDiscard: <X, E, R>(
  effect: Effect.Effect<X, E, R>
) => Layer.Layer<never, E, Exclude<R, Scope.Scope>> = Layer.effectDiscard
/** @internal */
export const layerUnwrap: <A, E1, R1, E, R>(
  self: Effect.Effect<Layer.Layer<A, E1, R1>, E, R>
) => Layer.Layer<A, E | E1, R1 | Exclude<R, Scope.Scope>> = Layer.unwrap

// used by HttpServer/State

/** @internal */
export const singleFailure = <E>(cause: Cause.Cause<E>): Option.Option<E> =>
  cause.reasons.length === 1 && Cause.isFailReason(cause.reasons[0]!)
    ? Option.some(cause.reasons[0].error)
    : Option.none()

// used by Upgrader.teardown

/** Effect 4's default teardown, except that an interruption alone (the signal's) exits 0 rather than 130. @internal */
export const teardown = <E, A>(exit: Exit.Exit<A, E>, onExit: (code: number) => void): void =>
  Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause) ? onExit(0) : Runtime.defaultTeardown(exit, onExit)

// used by tests (test/**): names the suite needs on both majors that src does not.

/** @internal */
export const pollFiber = <A, E>(self: Fiber.Fiber<A, E>): Effect.Effect<Option.Option<Exit.Exit<A, E>>> =>
  Effect.sync(() => Option.fromUndefinedOr(self.pollUnsafe()))
/** @internal */
export const dieMessage = (message: string): Effect.Effect<never> => Effect.die(new Error(message))
/** @internal */
export type EffectSuccess<T> = Effect.Success<T>
/** Effect 4 has no `Layer.memoize`: the layer is built once, on first use, into the caller's scope. @internal */
export const memoizeLayer = <A, E, R>(
  self: Layer.Layer<A, E, R>
): Effect.Effect<Layer.Layer<A, E, R>, never, Scope.Scope> =>
  Effect.flatMap(
    Effect.scope,
    (scope) => Effect.map(Effect.cached(Layer.buildWithScope(self, scope)), Layer.effectContext)
  )
/** @internal */
export const counterCount = (counter: Metric.Counter<number>, key: string, value: string): Effect.Effect<number> =>
  Effect.map(Metric.value(Metric.withAttributes(counter, { [key]: value })), (state) => state.count)
/** @internal */
export const yieldNow: Effect.Effect<void> = Effect.yieldNow
/** @internal */
export const getOrThrow: <A, E>(self: Result<A, E>) => A = Result_.getOrThrow
