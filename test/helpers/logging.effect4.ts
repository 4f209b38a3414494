/**
 * The Effect 4 version of `logging.ts` (same exports; see there).
 */
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as References from "effect/References"

export const minimumLogLevel = (level: "Fatal" | "Error" | "Warn" | "Info" | "Debug"): Layer.Layer<never> =>
  Layer.succeed(References.MinimumLogLevel, level)

/** Effect 4 passes the logged values as an array always; one value is unwrapped, as Effect 3 passes it. */
export const replaceLogger = (f: (level: string, message: unknown) => void): Layer.Layer<never> =>
  Logger.layer([
    Logger.make(({ logLevel, message }) =>
      f(logLevel.toUpperCase(), Array.isArray(message) && message.length === 1 ? message[0] : message)
    )
  ])
