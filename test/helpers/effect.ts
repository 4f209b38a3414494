/**
 * Test-only names for APIs that differ between Effect 3 and Effect 4, in the manner of
 * src/internal/fx.ts. They live here, not in fx, because they need modules (Logger, LogLevel,
 * ConfigProvider, TestClock) that the bundled core must not import before `ready`: esbuild keeps
 * an external module's import even when nothing in the bundle uses it. `effect.effect4.ts` is
 * the Effect 4 version (it replaces this file in the Effect 4 tree).
 */
import * as ConfigProvider from "effect/ConfigProvider"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as TestClock from "effect/TestClock"

/** A layer that drops log lines below `level` (Effect 3 spells Warn `Warning`). */
export const minimumLogLevel = (level: "Fatal" | "Error" | "Warn" | "Info" | "Debug"): Layer.Layer<never> =>
  Logger.minimumLogLevel(LogLevel.fromLiteral(level === "Warn" ? "Warning" : level))

/**
 * A layer whose only logger hands `f` each line's level in capitals ("WARN") and its message (the
 * value, or an array of the values when several were logged together).
 */
export const replaceLogger = (f: (level: string, message: unknown) => void): Layer.Layer<never> =>
  Logger.replace(Logger.defaultLogger, Logger.make(({ logLevel, message }) => f(logLevel.label, message)))

/** Runs `self` with configuration read from `env` (variable name to value) and nothing else. */
export const withConfigEnv =
  (env: Record<string, string>) => <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.withConfigProvider(self, ConfigProvider.fromMap(new Map(Object.entries(env))))

/** Moves the test clock on (`effect/TestClock` here, `effect/testing/TestClock` on Effect 4). */
export const adjustTestClock: (duration: Duration.DurationInput) => Effect.Effect<void> = TestClock.adjust
