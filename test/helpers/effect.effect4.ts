/**
 * The Effect 4 version of `effect.ts` (same exports; see there).
 */
import * as ConfigProvider from "effect/ConfigProvider"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as References from "effect/References"
import * as TestClock from "effect/testing/TestClock"

export const minimumLogLevel = (level: "Fatal" | "Error" | "Warn" | "Info" | "Debug"): Layer.Layer<never> =>
  Layer.succeed(References.MinimumLogLevel, level)

/** Effect 4 passes the logged values as an array always; one value is unwrapped, as Effect 3 passes it. */
export const replaceLogger = (f: (level: string, message: unknown) => void): Layer.Layer<never> =>
  Logger.layer([
    Logger.make(({ logLevel, message }) =>
      f(logLevel.toUpperCase(), Array.isArray(message) && message.length === 1 ? message[0] : message)
    )
  ])

export const withConfigEnv =
  (env: Record<string, string>) => <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.provideService(self, ConfigProvider.ConfigProvider, ConfigProvider.fromEnv({ env }))

export const adjustTestClock: (duration: Duration.Input) => Effect.Effect<void> = TestClock.adjust
