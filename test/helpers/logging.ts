/**
 * Logging for tests on both majors, in the manner of src/internal/fx.ts: the log-level and logger
 * APIs differ between Effect 3 and 4, and these names need modules (Logger, LogLevel) that the
 * bundled core must not import before `ready` (esbuild keeps an external module's import even when
 * nothing uses it), so they live here, not in fx. `logging.effect4.ts` replaces this file in the
 * Effect 4 tree. The generation fixture imports it: it loads nothing more than the fixture did.
 */
import type * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"

/** A layer that drops log lines below `level` (Effect 3 spells Warn `Warning`). */
export const minimumLogLevel = (level: "Fatal" | "Error" | "Warn" | "Info" | "Debug"): Layer.Layer<never> =>
  Logger.minimumLogLevel(LogLevel.fromLiteral(level === "Warn" ? "Warning" : level))

/**
 * A layer whose only logger hands `f` each line's level in capitals ("WARN") and its message (the
 * value, or an array of the values when several were logged together).
 */
export const replaceLogger = (f: (level: string, message: unknown) => void): Layer.Layer<never> =>
  Logger.replace(Logger.defaultLogger, Logger.make(({ logLevel, message }) => f(logLevel.label, message)))
