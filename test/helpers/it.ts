/**
 * `it.scoped` and `it.scopedLive` on both majors. Effect 4's @effect/vitest has no such names
 * (its `it.effect` and `it.live` provide a Scope themselves, and vitest 5's own `it.scoped` is
 * something else), so these wrap the body in `Effect.scoped` under `it.effect` / `it.live`, which
 * is what Effect 3's `it.scoped` / `it.scopedLive` do.
 */
import { it as vitest } from "@effect/vitest"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"

type Body<A, E> = () => Effect.Effect<A, E, Scope.Scope>

/** A test whose body runs in a scope closed at its end, on the test clock. */
const scoped = <A, E>(name: string, self: Body<A, E>, timeout?: number): void =>
  vitest.effect(name, () => Effect.scoped(Effect.suspend(self)), timeout)

/** A test whose body runs in a scope closed at its end, on the real clock. */
const scopedLive = <A, E>(name: string, self: Body<A, E>, timeout?: number): void =>
  vitest.live(name, () => Effect.scoped(Effect.suspend(self)), timeout)

/** A plain (promise or synchronous) test: vitest's `it`. */
const plain = (name: string, fn: () => unknown, timeout?: number): void => vitest(name, fn, timeout)

/**
 * @effect/vitest's `it`, `it.effect` and `it.live`, with `scoped` and `scopedLive` that work on
 * both majors.
 */
export const it = Object.assign(plain, { effect: vitest.effect, live: vitest.live, scoped, scopedLive })
