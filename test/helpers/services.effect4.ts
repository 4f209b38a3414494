/**
 * The Effect 4 version of `services.ts` (same exports; see there).
 */
import * as ConfigProvider from "effect/ConfigProvider"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as TestClock from "effect/testing/TestClock"

export const withConfigEnv =
  (env: Record<string, string>) => <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.provideService(self, ConfigProvider.ConfigProvider, ConfigProvider.fromEnv({ env }))

export const adjustTestClock: (duration: Duration.Input) => Effect.Effect<void> = TestClock.adjust
