/**
 * One name for each Effect API that differs between Effect 3 and Effect 4 (issue 18), the way
 * `vue-demi` serves Vue 2 and 3. This is the Effect 3 implementation; `fx.effect4.ts` is the
 * Effect 4 one with the same exports, and the Effect 4 build selects it (tsconfig.effect4.json
 * maps `./fx.js` there). Everything else in src/ imports Effect modules that exist in both
 * majors, plus this one, so the core is written once.
 *
 * Only what the core uses lives here; each export is an alias or a one-line adapter, so the
 * bundled core (scripts/build-dist.mjs) inlines it and start-up pays nothing for the indirection.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import type * as ConfigModule from "effect/Config"
import type * as ConfigErrors from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberModule from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Layer from "effect/Layer"
import type * as LoggerModule from "effect/Logger"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"

/** The major this build runs on: for messages and the odd behavioural branch. @internal */
export const effectMajor = 3 as const

// --- Result (Effect 3: Either; Effect 4: Result). The runtime values are the major's own, so
// callers outside the core (tests, apps) can keep using that major's module on them.

/** A success or a failure, in the major's own representation. @internal */
export type Result<A, E> = Either.Either<A, E>
/** @internal */
export type Success<A, E> = Either.Right<E, A>
/** @internal */
export type Failure<A, E> = Either.Left<E, A>
/** @internal */
export const succeed: <A>(value: A) => Result<A, never> = Either.right
/** @internal */
export const fail: <E>(error: E) => Result<never, E> = Either.left
/** @internal */
export const isSuccess: <A, E>(self: Result<A, E>) => self is Success<A, E> = Either.isRight
/** @internal */
export const isFailure: <A, E>(self: Result<A, E>) => self is Failure<A, E> = Either.isLeft
/** The value of a narrowed success (the field is `right` here, `success` on Effect 4). @internal */
export const successOf = <A, E>(self: Success<A, E>): A => self.right
/** The error of a narrowed failure (the field is `left` here, `failure` on Effect 4). @internal */
export const failureOf = <A, E>(self: Failure<A, E>): E => self.left
/** @internal */
export const mapResult = <A, E, B>(self: Result<A, E>, f: (a: A) => B): Result<B, E> => Either.map(self, f)
/** @internal */
export const matchResult = <A, E, B, C = B>(
  self: Result<A, E>,
  cases: { readonly onSuccess: (a: A) => B; readonly onFailure: (e: E) => C }
): B | C => Either.match(self, { onRight: cases.onSuccess, onLeft: cases.onFailure })
/** Runs `f`, a throw becoming the failure: Effect 3 `Either.try`, Effect 4 `Result.try`. @internal */
export const tryResult = <A>(f: () => A): Result<A, unknown> => Either.try(f)
/** A result as an effect that fails with its error. @internal */
export const fromResult = <A, E>(self: Result<A, E>): Effect.Effect<A, E> =>
  Either.match(self, { onLeft: Effect.fail, onRight: Effect.succeed })

// --- Effect combinators renamed in 4.

/** Effect 3 `Effect.async`, Effect 4 `Effect.callback`. @internal */
export const callback: <A, E = never, R = never>(
  register: (
    resume: (effect: Effect.Effect<A, E, R>) => void,
    signal: AbortSignal
  ) => void | Effect.Effect<void, never, R>
) => Effect.Effect<A, E, R> = Effect.async
/** Effect 3 `catchAll`, Effect 4 `catch`. @internal */
export const catchAll: <E, A2, E2, R2>(
  f: (e: E) => Effect.Effect<A2, E2, R2>
) => <A, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A2 | A, E2, R2 | R> = Effect.catchAll
/** A fiber outside any parent's scope: Effect 3 `forkDaemon`, Effect 4 `forkDetach`. @internal */
export const forkDetach: <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<Fiber.Fiber<A, E>, never, R> =
  Effect.forkDaemon
/** Fails with `onTimeout()` after `duration`: Effect 3 `timeoutFail`, Effect 4 `timeoutOrElse`. @internal */
export const timeoutFail =
  <E1>(options: { readonly duration: Duration.DurationInput; readonly onTimeout: () => E1 }) =>
  <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E | E1, R> => Effect.timeoutFail(self, options)
/** Runs a scoped effect in a scope the caller closes: Effect 3 `Scope.extend`, Effect 4 `Scope.provide`. @internal */
export const inScope: (
  scope: Scope.Scope
) => <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, Exclude<R, Scope.Scope>> = Scope.extend
/** Maps the outcome of a deadline: Effect 3 `timeoutTo`, Effect 4 `timeoutOption` then a match. @internal */
export const timeoutTo = <A, B, B1>(
  options: { readonly duration: DurationInput; readonly onSuccess: (a: A) => B; readonly onTimeout: () => B1 }
) =>
<E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<B | B1, E, R> => Effect.timeoutTo(self, options)
/** The `_tag` of the error `Effect.timeout` fails with: `TimeoutException` here, `TimeoutError` on Effect 4. @internal */
export const timeoutTag = "TimeoutException" as const
/** Effect 3 `catchAllCause`, Effect 4 `catchCause`. @internal */
export const catchAllCause: <E, A2, E2, R2>(
  f: (cause: Cause.Cause<E>) => Effect.Effect<A2, E2, R2>
) => <A, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A2 | A, E2, R2 | R> = Effect.catchAllCause
/** Effect 3 `catchAllDefect`, Effect 4 `catchDefect`. @internal */
export const catchAllDefect: <A2, E2, R2>(
  f: (defect: unknown) => Effect.Effect<A2, E2, R2>
) => <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A2 | A, E2 | E, R2 | R> = Effect.catchAllDefect
/** The outcome as a value that never fails: Effect 3 `Effect.either`, Effect 4 `Effect.result`. @internal */
export const result: <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<Result<A, E>, never, R> = Effect.either
/** A fiber in the current fiber's scope: Effect 3 `fork`, Effect 4 `forkChild`. @internal */
export const fork: <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<RunningFiber<A, E>, never, R> = Effect.fork
/** A child scope of `scope` whose finalizers run in order: `Scope.fork` with a strategy module (3) or a string (4). @internal */
export const forkScope = (scope: Scope.Scope): Effect.Effect<Scope.CloseableScope> =>
  Scope.fork(scope, ExecutionStrategy.sequential)
/** Whether an exit is an interruption only (Effect 4 has no such predicate; see fx.effect4.ts). @internal */
export const isInterrupted: <A, E>(self: Exit.Exit<A, E>) => boolean = Exit.isInterrupted

// --- Cause.

/** Whether a cause is a single typed failure (no defect, no interruption): Effect 4 has no such predicate. @internal */
export const isFailType = <E>(self: Cause.Cause<E>): boolean => Cause.isFailType(self)
/** The first typed failure: Effect 3 `failureOption`, Effect 4 `findErrorOption`. @internal */
export const failureOption: <E>(self: Cause.Cause<E>) => Option.Option<E> = Cause.failureOption
/** Interruptions and nothing else: Effect 3 `isInterruptedOnly`, Effect 4 `hasInterruptsOnly`. @internal */
export const isInterruptedOnly: <E>(self: Cause.Cause<E>) => boolean = Cause.isInterruptedOnly

// --- Unsafe (synchronous) constructors and completions, renamed `xUnsafe` in 4.

/** Completes a Deferred; its waiters run later, on the scheduler (on Effect 4, inside this call). @internal */
export const doneUnsafe = <A, E>(self: Deferred.Deferred<A, E>, effect: Effect.Effect<A, E>): void =>
  Deferred.unsafeDone(self, effect)
/** @internal */
export const makeDeferredUnsafe = <A, E = never>(): Deferred.Deferred<A, E> => Deferred.unsafeMake<A, E>(FiberId.none)
/** @internal */
export const offerUnsafe = <A>(self: Queue.Enqueue<A>, value: A): boolean => Queue.unsafeOffer(self, value)

// --- Small renames of types and constructors.

/** @internal */
export type DurationInput = Duration.DurationInput
/** @internal */
export const decodeDuration: (input: DurationInput) => Duration.Duration = Duration.decode
/** @internal */
export type Semaphore = Effect.Semaphore
/** @internal */
export const makeSemaphore: (permits: number) => Effect.Effect<Semaphore> = Effect.makeSemaphore
/** @internal */
export const makeSemaphoreUnsafe: (permits: number) => Semaphore = Effect.unsafeMakeSemaphore
/** @internal */
export type RunningFiber<A, E> = Fiber.RuntimeFiber<A, E>
/** @internal */
export const fromNullable: <A>(value: A) => Option.Option<NonNullable<A>> = Option.fromNullable

// --- Config and Logger. The caller passes the module it imported (the same path in both majors):
// fx is bundled into the core, which must not load these before `ready` for their sake.

/** What a config fails with: Effect 3 `ConfigError.ConfigError`, Effect 4 `Config.ConfigError`. @internal */
export type ConfigError = ConfigErrors.ConfigError
/** A string read from the variable `name`: Effect 3 `Config.string`, Effect 4 `Config.String`. @internal */
export const configString = (Config: typeof ConfigModule, name: string): ConfigModule.Config<string> =>
  Config.string(name)
/**
 * Refines a config with `f`, whose failure is a message. `mapAttempt` makes a thrown error's
 * message the ConfigError's InvalidData (no ConfigError module needed), and Effect 3's Config
 * puts the variable's name in front of it itself; the Effect 4 adapter writes `name` there.
 * @internal
 */
export const configRefine =
  <A, B>(Config: typeof ConfigModule, _name: string, f: (a: A) => Result<B, string>) =>
  (self: ConfigModule.Config<A>): ConfigModule.Config<B> =>
    Config.mapAttempt(self, (a) =>
      matchResult(f(a), {
        onSuccess: (b) => b,
        onFailure: (message) => {
          throw new Error(message)
        }
      }))

/** The console loggers by format name: Effect 3 has them as layers, Effect 4 builds them with `Logger.layer`. @internal */
export const consoleLoggers = (
  Logger: typeof LoggerModule
): Record<"pretty" | "logfmt" | "json", Layer.Layer<never>> => ({
  pretty: Logger.pretty,
  logfmt: Logger.logFmt,
  json: Logger.json
})

// --- Metrics (Effect 3 tags, Effect 4 attributes).

/** Adds one to a counter under `key=value`. @internal */
export const incrementTagged = (
  counter: Metric.Metric.Counter<number>,
  key: string,
  value: string
): Effect.Effect<void> => Metric.increment(Metric.tagged(counter, key, value))

// --- Services and layers.

/** The shape a tag class's instances stand for (`X["Type"]` here, `X["Service"]` on Effect 4). @internal */
export type ShapeOf<Instance> = Instance extends { readonly Type: infer S } ? S : never

/**
 * A service tag class: `class X extends Fx.Tag<X, Shape>()("key") {}` (the Effect 4 argument
 * order; Effect 3 spells it `Context.Tag("key")<X, Shape>()`).
 * @internal
 */
export const Tag = <Self, Shape>() => <const Key extends string>(key: Key): Context.TagClass<Self, Key, Shape> =>
  Context.Tag(key)<Self, Shape>()

/** A layer whose resources live as long as the layer: Effect 3 `Layer.scoped`, Effect 4 `Layer.effect`. @internal */
export const layerScoped = Layer.scoped
/** Effect 3 `Layer.scopedContext`, Effect 4 `Layer.effectContext`. @internal */
export const layerScopedContext: <A, E, R>(
  effect: Effect.Effect<Context.Context<A>, E, R>
) => Layer.Layer<A, E, Exclude<R, Scope.Scope>> = Layer.scopedContext
/** Effect 3 `Layer.scopedDiscard`, Effect 4 `Layer.effectDiscard`. @internal */
export const layerScopedDiscard: <X, E, R>(
  effect: Effect.Effect<X, E, R>
) => Layer.Layer<never, E, Exclude<R, Scope.Scope>> = Layer.scopedDiscard
/** A layer built by an effect: Effect 3 `Layer.unwrapEffect`, Effect 4 `Layer.unwrap`. @internal */
export const layerUnwrap: <A, E1, R1, E, R>(
  self: Effect.Effect<Layer.Layer<A, E1, R1>, E, R>
) => Layer.Layer<A, E | E1, R1 | R> = Layer.unwrapEffect

// used by HttpServer/State

/** The error of a cause that is one typed failure and nothing else (Effect 3 `Cause.isFailType`). @internal */
export const singleFailure = <E>(cause: Cause.Cause<E>): Option.Option<E> =>
  Cause.isFailType(cause) ? Option.some(cause.error) : Option.none()

// used by Upgrader.teardown

/**
 * `NodeRuntime.runMain`'s teardown for a service: 0 on success or when the
 * signal's interruption ended it, 1 otherwise (Effect 3's default, kept as
 * it is; Effect 4's default exits 130 after an interruption).
 * @internal
 */
export const teardown = <E, A>(exit: Exit.Exit<A, E>, onExit: (code: number) => void): void =>
  onExit(Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause) ? 1 : 0)

// used by tests (test/**): names the suite needs on both majors that src does not.

/** A fiber's exit if it is done: Effect 3 `Fiber.poll`, Effect 4 `fiber.pollUnsafe()`. @internal */
export const pollFiber: <A, E>(self: Fiber.Fiber<A, E>) => Effect.Effect<Option.Option<Exit.Exit<A, E>>> =
  FiberModule.poll
/** @internal */
export const dieMessage: (message: string) => Effect.Effect<never> = Effect.dieMessage
/** The success type of an effect type. @internal */
export type EffectSuccess<T> = T extends Effect.Effect<infer A, infer _E, infer _R> ? A : never
/** A layer that builds `self` once, on first use, for every provide of it in the scope. @internal */
export const memoizeLayer: <A, E, R>(
  self: Layer.Layer<A, E, R>
) => Effect.Effect<Layer.Layer<A, E, R>, never, Scope.Scope> = Layer.memoize
/** A counter's count under `key=value`. @internal */
export const counterCount = (
  counter: Metric.Metric.Counter<number>,
  key: string,
  value: string
): Effect.Effect<number> => Effect.map(Metric.value(Metric.tagged(counter, key, value)), (state) => state.count)
/** Lets other fibers run: Effect 3 `Effect.yieldNow()`, Effect 4 `Effect.yieldNow` (a value). @internal */
export const yieldNow: Effect.Effect<void> = Effect.yieldNow()
/** A success's value, or throws its error: Effect 3 `Either.getOrThrow`, Effect 4 `Result.getOrThrow`. @internal */
export const getOrThrow: <A, E>(self: Result<A, E>) => A = Either.getOrThrow
