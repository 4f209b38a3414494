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
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberModule from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Layer from "effect/Layer"
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
/** Whether an exit is an interruption only (Effect 4 has no such predicate; see fx.effect4.ts). @internal */
export const isInterrupted: <A, E>(self: Exit.Exit<A, E>) => boolean = Exit.isInterrupted

// --- Unsafe (synchronous) constructors and completions, renamed `xUnsafe` in 4.

/** @internal */
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
export type RunningFiber<A, E> = Fiber.RuntimeFiber<A, E>
/** @internal */
export const fromNullable: <A>(value: A) => Option.Option<NonNullable<A>> = Option.fromNullable

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

// used by tests (test/**): names the suite needs on both majors that src does not.

/** Effect 3 `Effect.fork`, Effect 4 `Effect.forkChild`. @internal */
export const fork: <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<Fiber.RuntimeFiber<A, E>, never, R> =
  Effect.fork
/** A fiber's exit if it is done: Effect 3 `Fiber.poll`, Effect 4 `fiber.pollUnsafe()`. @internal */
export const pollFiber: <A, E>(self: Fiber.Fiber<A, E>) => Effect.Effect<Option.Option<Exit.Exit<A, E>>> =
  FiberModule.poll
/** The outcome as a `Result`: Effect 3 `Effect.either`, Effect 4 `Effect.result`. @internal */
export const result: <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<Result<A, E>, never, R> = Effect.either
/** @internal */
export const dieMessage: (message: string) => Effect.Effect<never> = Effect.dieMessage
/** Effect 3 `catchAllDefect`, Effect 4 `catchDefect`. @internal */
export const catchAllDefect: <A2, E2, R2>(
  f: (defect: unknown) => Effect.Effect<A2, E2, R2>
) => <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A2 | A, E2 | E, R2 | R> = Effect.catchAllDefect
/** The first typed error of a cause: Effect 3 `Cause.failureOption`, Effect 4 `Cause.findErrorOption`. @internal */
export const failureOption: <E>(self: Cause.Cause<E>) => Option.Option<E> = Cause.failureOption
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
