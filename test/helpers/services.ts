/**
 * Test services on both majors, in the manner of src/internal/fx.ts (see logging.ts for why not in
 * fx): configuration from a map of variables, and the test clock (`effect/TestClock` here,
 * `effect/testing/TestClock` on Effect 4). `services.effect4.ts` replaces this file in the Effect 4 tree.
 */
import * as ConfigProvider from "effect/ConfigProvider"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as TestClock from "effect/TestClock"

/** Runs `self` with configuration read from `env` (variable name to value) and nothing else. */
export const withConfigEnv =
  (env: Record<string, string>) => <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.withConfigProvider(self, ConfigProvider.fromMap(new Map(Object.entries(env))))

/** Moves the test clock on (`effect/TestClock` here, `effect/testing/TestClock` on Effect 4). */
export const adjustTestClock: (duration: Duration.DurationInput) => Effect.Effect<void> = TestClock.adjust
