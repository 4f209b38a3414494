/**
 * Reading a subcommand's command line (with `node:util`'s `parseArgs`: the
 * command needs nothing but `effect`), and printing what it answers.
 *
 * @internal
 */
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import { parseArgs } from "node:util"
import * as Durations from "../duration.js"
import * as Fx from "../fx.js"
import { COMMANDS, type CommandSpec, type Name } from "./spec.js"

/** A command line the CLI refuses: printed with a pointer to the help, exit code 2. */
export class UsageError {
  constructor(readonly message: string) {}
}

/**
 * `run`'s options end at `--` or at the first word that is not an option, so
 * the app's own flags are never taken for the runner's.
 */
export const splitRun = (args: ReadonlyArray<string>): [ReadonlyArray<string>, ReadonlyArray<string>] => {
  const dashes = args.indexOf("--")
  let i = 0
  while (i < args.length && args[i]!.startsWith("-") && i !== dashes) {
    i += args[i]!.includes("=") || args[i] === "--help" || args[i] === "-h" ? 1 : 2
  }
  if (dashes !== -1 && dashes <= i) return [args.slice(0, dashes), args.slice(dashes + 1)]
  return [args.slice(0, i), args.slice(i)]
}

/** Parses a subcommand's options; each typed value is read, defaulted and checked when asked for. */
export const parseOptions = (name: Name, args: ReadonlyArray<string>, positionals: boolean) => {
  const spec: CommandSpec = COMMANDS[name]
  let parsed
  try {
    parsed = parseArgs({
      args: [...args],
      strict: true,
      allowPositionals: positionals,
      options: Object.fromEntries(
        Object.entries(spec.options).map((
          [key, option]
        ) => [key, option.type === "flag" ? { type: "boolean" as const } : { type: "string" as const }])
      )
    })
  } catch (error) {
    const message = (error as Error).message.replace(/\. To specify a positional.*$/s, "")
    throw new UsageError(`effect-tableflip ${name}: ${message}`)
  }
  const values = parsed.values as Record<string, string | boolean | undefined>
  const duration = (key: string): Duration.Duration => {
    const text = (values[key] as string | undefined) ?? spec.options[key]!.default!
    const parsedDuration = Durations.parse(text)
    if (parsedDuration === undefined) {
      throw new UsageError(
        `effect-tableflip ${name}: --${key} ${JSON.stringify(text)} is not a duration; use ${Durations.FORMS}`
      )
    }
    return parsedDuration
  }
  const format = (key: string): Layer.Layer<never> => {
    const text = (values[key] as string | undefined) ?? spec.options[key]!.default!
    const layer = LOG_FORMATS[text]
    if (layer === undefined) {
      throw new UsageError(
        `effect-tableflip ${name}: --${key} ${JSON.stringify(text)} is not one of pretty, logfmt, json`
      )
    }
    return layer
  }
  return { help: values.help === true, file: (key: string) => values[key] as string | undefined, duration, format }
}

const LOG_FORMATS: Record<string, Layer.Layer<never>> = Fx.consoleLoggers(Logger)

/** Prints `text` (stdout for exit 0, else stderr) and succeeds with `code`, the exit code. */
export const say = (code: number, text: string) =>
  Effect.sync(() => {
    ;(code === 0 ? process.stdout : process.stderr).write(`${text}\n`)
    return code
  })
