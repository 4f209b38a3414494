/**
 * The CLI's subcommands as data (usage, description, options with their
 * types and defaults), and the help texts made from it.
 *
 * @internal
 */
import * as Fs from "node:fs"
import * as Durations from "../duration.js"

/** One option of a subcommand: its value's type, default and meaning, for parsing and for help. */
export interface OptionSpec {
  readonly type: "file" | "duration" | "format" | "flag"
  readonly default?: string
  readonly description: string
}

/** A subcommand: its usage line, what it does, its options. */
export interface CommandSpec {
  readonly usage: string
  readonly description: string
  readonly options: Readonly<Record<string, OptionSpec>>
}

export const HELP: OptionSpec = { type: "flag", description: "print this help" }

/** `upgrade` and `prepare`: both signal the process in a PID file and wait for the outcome it records. */
const signalOptions = (pidFile: string): Readonly<Record<string, OptionSpec>> => ({
  "pid-file": { type: "file", description: pidFile },
  timeout: { type: "duration", default: "2min", description: "how long to wait for the outcome" },
  help: HELP
})

/** Every subcommand, for parsing and for help. */
export const COMMANDS = {
  run: {
    usage: "effect-tableflip run [options] [--] <command> [args...]",
    description: "Runs an app under a runner that keeps one pid, holds its listeners and upgrades it on SIGHUP.\n" +
      "SIGTERM or SIGINT (Ctrl-C) stops the app (it drains) and the runner exits with its exit code.",
    options: {
      "pid-file": { type: "file", description: "write the runner's pid here, and each upgrade's outcome beside it" },
      "upgrade-timeout": {
        type: "duration",
        default: "1min",
        description: "how long a new generation has to become ready"
      },
      probation: {
        type: "duration",
        default: "0s",
        description: "how long a ready generation must stay alive before its predecessor stops"
      },
      "log-format": {
        type: "format",
        default: "pretty",
        description: "the runner's own log lines: pretty (as NodeRuntime.runMain prints), logfmt or json"
      },
      help: HELP
    }
  },
  upgrade: {
    usage: "effect-tableflip upgrade --pid-file <file> [options]",
    description: "Sends SIGHUP to the process in a PID file and waits for the outcome it records.\n" +
      "Exits 0 (upgraded), 1 (the upgrade failed; the old generation serves on), 2 (no PID file to read),\n" +
      "3 (no outcome within the timeout) or 4 (a stale PID file: its process is gone or the pid was reused;\n" +
      "nothing is signalled).",
    options: signalOptions("the PID file of the app or the runner (required)")
  },
  prepare: {
    usage: "effect-tableflip prepare --pid-file <file> [options]",
    description: "Sends SIGUSR2 to the app in a PID file, which starts the next generation and parks it loaded;\n" +
      "the next upgrade hands it the sockets. Waits for the outcome the app records. Exits as upgrade does,\n" +
      "0 meaning prepared.",
    options: signalOptions("the PID file of the app (required)")
  },
  "build-native": {
    usage: "effect-tableflip build-native",
    description: "Builds the native addon for this platform (the package ships it for linux-x64 only).\n" +
      "Needs a C compiler, python3 and make.",
    options: { help: HELP }
  }
} satisfies Record<string, CommandSpec>

/** A subcommand's name. */
export type Name = keyof typeof COMMANDS

/** The package's own version: package.json sits three levels above this module, in src/ and dist/ alike. */
export const VERSION = (JSON.parse(Fs.readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as {
  readonly version: string
}).version

/** The top-level help. */
export const usage = (): string =>
  [
    `effect-tableflip ${VERSION}: zero-downtime upgrades for Node.js services`,
    "",
    ...Object.values(COMMANDS).map((spec) => `  ${spec.usage}`),
    "",
    "effect-tableflip <command> --help describes each command. Durations: " + Durations.FORMS + "."
  ].join("\n")

/** One subcommand's help. */
export const commandHelp = (spec: CommandSpec): string => {
  const rows = Object.entries(spec.options).map(([name, option]) => {
    const value = option.type === "flag" ? "" : ` <${option.type}>`
    const fallback = option.default === undefined ? "" : ` (default: ${option.default})`
    return [`  --${name}${value}`, `${option.description}${fallback}`] as const
  })
  const width = Math.max(...rows.map(([left]) => left.length)) + 2
  return [
    `Usage: ${spec.usage}`,
    "",
    spec.description,
    "",
    "Options:",
    ...rows.map(([left, right]) => `${left.padEnd(width)}${right}`)
  ].join("\n")
}
