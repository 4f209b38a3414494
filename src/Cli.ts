/**
 * The `effect-tableflip` command:
 *
 *   effect-tableflip run [--pid-file F] [--upgrade-timeout D] [--probation D] [--] <command...>
 *   effect-tableflip upgrade --pid-file F [--timeout D]
 *   effect-tableflip prepare --pid-file F [--timeout D]
 *   effect-tableflip build-native
 *
 * `run` keeps one pid for the service's whole life (a container's PID 1, a
 * terminal, supervisord): it keeps the listening sockets, starts the app as
 * its child through the handover protocol, upgrades it on SIGHUP, stops it on
 * SIGTERM / SIGINT (Ctrl-C), and exits with the app's exit code.
 *
 * `upgrade` signals the process in a PID file (an app, or a runner), waits
 * for the outcome that process records beside the PID file, prints it, and
 * exits 0 (upgraded), 1 (the upgrade failed; the old generation serves on),
 * 2 (no PID file to read), 3 (no outcome within the timeout) or 4 (the PID
 * file is stale: its process is gone, or the pid now names another process,
 * which is never signalled). A process that has no handler for the signal
 * is not sent it either (exit 2): the default action would end it.
 *
 * `prepare` does the same with SIGUSR2 (`Upgrader.layerSignal` prepares the
 * next generation on it): it exits 0 once the next generation is parked.
 *
 * Arguments are parsed with `node:util`'s `parseArgs`: the command needs
 * nothing but `effect`, so a library user installs no CLI framework.
 *
 * @since 0.2.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import * as Durations from "./internal/duration.js"
import * as Procfs from "./internal/procfs.js"
import * as Runner from "./internal/runner.js"
import * as PidFile from "./PidFile.js"

/** One option of a subcommand: its value's type, default and meaning, for parsing and for help. */
interface OptionSpec {
  readonly type: "file" | "duration" | "format" | "flag"
  readonly default?: string
  readonly description: string
}

interface CommandSpec {
  readonly usage: string
  readonly description: string
  readonly options: Readonly<Record<string, OptionSpec>>
}

const HELP: OptionSpec = { type: "flag", description: "print this help" }

const COMMANDS = {
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
    options: {
      "pid-file": { type: "file", description: "the PID file of the app or the runner (required)" },
      timeout: { type: "duration", default: "2min", description: "how long to wait for the outcome" },
      help: HELP
    }
  },
  prepare: {
    usage: "effect-tableflip prepare --pid-file <file> [options]",
    description: "Sends SIGUSR2 to the app in a PID file, which starts the next generation and parks it loaded;\n" +
      "the next upgrade hands it the sockets. Waits for the outcome the app records. Exits as upgrade does,\n" +
      "0 meaning prepared.",
    options: {
      "pid-file": { type: "file", description: "the PID file of the app (required)" },
      timeout: { type: "duration", default: "2min", description: "how long to wait for the outcome" },
      help: HELP
    }
  },
  "build-native": {
    usage: "effect-tableflip build-native",
    description: "Builds the native addon for this platform (the package ships it for linux-x64 only).\n" +
      "Needs a C compiler, python3 and make.",
    options: { help: HELP }
  }
} satisfies Record<string, CommandSpec>

type Name = keyof typeof COMMANDS

/** The package's own version: package.json sits one level above this module, in src/ and dist/ alike. */
const VERSION = (JSON.parse(Fs.readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
  readonly version: string
}).version

const usage = (): string =>
  [
    `effect-tableflip ${VERSION}: zero-downtime upgrades for Node.js services`,
    "",
    ...Object.values(COMMANDS).map((spec) => `  ${spec.usage}`),
    "",
    "effect-tableflip <command> --help describes each command. Durations: " + Durations.FORMS + "."
  ].join("\n")

const commandHelp = (spec: CommandSpec): string => {
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

/** A command line the CLI refuses: printed with a pointer to the help, exit code 2. */
class UsageError {
  constructor(readonly message: string) {}
}

/**
 * `run`'s options end at `--` or at the first word that is not an option, so
 * the app's own flags are never taken for the runner's.
 */
const splitRun = (args: ReadonlyArray<string>): [ReadonlyArray<string>, ReadonlyArray<string>] => {
  const dashes = args.indexOf("--")
  let i = 0
  while (i < args.length && args[i]!.startsWith("-") && i !== dashes) {
    i += args[i]!.includes("=") || args[i] === "--help" || args[i] === "-h" ? 1 : 2
  }
  if (dashes !== -1 && dashes <= i) return [args.slice(0, dashes), args.slice(dashes + 1)]
  return [args.slice(0, i), args.slice(i)]
}

const parseOptions = (name: Name, args: ReadonlyArray<string>, positionals: boolean) => {
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

const LOG_FORMATS: Record<string, Layer.Layer<never>> = {
  pretty: Logger.pretty,
  logfmt: Logger.logFmt,
  json: Logger.json
}

const say = (code: number, text: string) =>
  Effect.sync(() => {
    ;(code === 0 ? process.stdout : process.stderr).write(`${text}\n`)
    return code
  })

const run = (args: ReadonlyArray<string>) => {
  const [flags, command] = splitRun(args)
  const options = parseOptions("run", flags, false)
  if (options.help) return say(0, commandHelp(COMMANDS.run))
  if (command.length === 0) throw new UsageError("effect-tableflip run: no command to run")
  const pidFile = options.file("pid-file")
  return Runner.run({
    command,
    pidFile: pidFile === undefined ? undefined : Path.resolve(pidFile),
    upgradeTimeout: options.duration("upgrade-timeout"),
    probation: options.duration("probation")
  }).pipe(
    Effect.catchAll((error) => say(1, `effect-tableflip run: ${error.message}`)),
    Effect.scoped,
    Effect.provide(options.format("log-format"))
  )
}

/** The process `upgrade` signalled, as /proc identifies it. */
interface Target {
  readonly pid: number
  readonly uid: number
  readonly startTicks: number
  readonly startedAt: number
}

/**
 * Whether `outcome`, read from a file owned by `owner`, answers a signal sent
 * at `since` to the process `pid` (running as `uid`, started at `startedAt`).
 * It does when that process wrote it (the file is root's or the process
 * user's, and the attempt began after the process started) and the attempt
 * began after the signal, or the process has handed over for good: then the
 * upgrade in flight when the signal came is the one that served it.
 */
const answers = (
  outcome: PidFile.Outcome,
  owner: number,
  target: Target,
  since: number
): boolean =>
  (owner === 0 || owner === target.uid) &&
  outcome.pid === target.pid &&
  outcome.startedAt >= target.startedAt - 50 &&
  (outcome.startedAt >= since || (outcome.outcome === "upgraded" && outcome.handedOver === true))

/** The outcome file's record and owner, if it can be read and parsed. */
const readOutcome = (file: string): { readonly outcome: PidFile.Outcome; readonly owner: number } | undefined => {
  try {
    const fd = Fs.openSync(file, "r")
    try {
      const owner = Fs.fstatSync(fd).uid
      const outcome = JSON.parse(Fs.readFileSync(fd, "utf8")) as PidFile.Outcome
      return typeof outcome === "object" && outcome !== null ? { outcome, owner } : undefined
    } finally {
      Fs.closeSync(fd)
    }
  } catch {
    return undefined
  }
}

/**
 * Waits for the outcome that answers a SIGHUP sent at `since`, or for the
 * process to exit without one. The outcome is renamed into place, so the
 * directory is watched; the process's exit has no event Node can wait on, so
 * it is checked each second.
 */
const awaitOutcome = (file: string, target: Target, since: number) =>
  Effect.async<PidFile.Outcome | "exited">((resume) => {
    const check = () => {
      const read = readOutcome(file)
      if (read !== undefined && answers(read.outcome, read.owner, target, since)) {
        done()
        resume(Effect.succeed(read.outcome))
      } else if (Procfs.processIdentity(target.pid)?.startTicks !== target.startTicks) {
        done()
        resume(Effect.succeed("exited"))
      }
    }
    const watcher = Fs.watch(Path.dirname(file), check)
    const interval = setInterval(check, 1000)
    const done = () => {
      watcher.close()
      clearInterval(interval)
    }
    check()
    return Effect.sync(done)
  })

/** What `upgrade` and `prepare` each send, where the answer is recorded, and how it reads. */
const SIGNALLED = {
  upgrade: { signal: "SIGHUP", outcomes: PidFile.outcomePath, done: "upgraded", what: "upgrade" },
  prepare: { signal: "SIGUSR2", outcomes: PidFile.prepareOutcomePath, done: "prepared", what: "prepare" }
} as const

const signalAndAwait = (name: keyof typeof SIGNALLED, args: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const { done, outcomes, signal, what } = SIGNALLED[name]
    const options = parseOptions(name, args, false)
    if (options.help) return yield* say(0, commandHelp(COMMANDS[name]))
    const pidFile = options.file("pid-file")
    if (pidFile === undefined) throw new UsageError(`effect-tableflip ${name}: --pid-file is required`)
    const timeout = options.duration("timeout")
    const verified = yield* Effect.either(PidFile.verify(pidFile))
    if (verified._tag === "Left") {
      return yield* say(verified.left._tag === "StalePidFile" ? 4 : 2, verified.left.message)
    }
    const pid = verified.right
    const identity = Procfs.processIdentity(pid)
    if (identity !== undefined && Procfs.catches(pid, signal) === false) {
      return yield* say(
        2,
        `pid ${pid} from ${pidFile} has no ${signal} handler, so ${signal} would end it; nothing was sent ` +
          `(is Upgrader.layerSignal() in its layers${name === "prepare" ? ", with prepare enabled" : ""}?)`
      )
    }
    const since = Date.now()
    try {
      if (identity === undefined) throw Object.assign(new Error("gone"), { code: "ESRCH" })
      process.kill(pid, signal)
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      return yield* code === "ESRCH"
        ? say(4, `pid ${pid} from ${pidFile} exited before it could be signalled`)
        : say(2, `cannot signal pid ${pid} from ${pidFile}: ${code} (${(error as Error).message})`)
    }
    const outcome = yield* awaitOutcome(outcomes(pidFile), { pid, ...identity! }, since).pipe(
      Effect.timeout(timeout),
      Effect.option
    )
    if (outcome._tag === "None") {
      return yield* say(3, `no outcome from pid ${pid} within ${Duration.format(timeout)}`)
    }
    if (outcome.value === "exited") {
      return yield* say(1, `pid ${pid} exited without recording the outcome of its ${what}`)
    }
    const { child, error } = outcome.value
    return yield* outcome.value.outcome === done
      ? say(0, `${done}: pid ${pid} -> ${child}`)
      : say(1, `${what} failed: ${error?._tag}: ${error?.message}`)
  })

const buildNative = (args: ReadonlyArray<string>) =>
  Effect.suspend(() => {
    if (parseOptions("build-native", args, false).help) return say(0, commandHelp(COMMANDS["build-native"]))
    // The script sits one level above this module, in src/ and dist/ alike.
    const script = fileURLToPath(new URL("../scripts/build-native.mjs", import.meta.url))
    const result = ChildProcess.spawnSync(process.execPath, [script], { stdio: "inherit" })
    return Effect.succeed(result.status ?? 1)
  })

/**
 * Parses `argv` (as `process.argv`: node, script, then the arguments), runs
 * the command and succeeds with the exit code to exit with. A command line it
 * cannot parse prints what is wrong and exits 2.
 *
 * @since 0.2.0
 * @category commands
 */
export const main = (argv: ReadonlyArray<string>): Effect.Effect<number> =>
  Effect.suspend(() => {
    const [name, ...args] = argv.slice(2)
    if (name === undefined || name === "--help" || name === "-h" || name === "help") return say(0, usage())
    if (name === "--version" || name === "-v") return say(0, VERSION)
    switch (name) {
      case "run":
        return run(args)
      case "upgrade":
      case "prepare":
        return signalAndAwait(name, args)
      case "build-native":
        return buildNative(args)
      default:
        throw new UsageError(`effect-tableflip: unknown command ${JSON.stringify(name)}`)
    }
  }).pipe(
    Effect.catchAllDefect((defect) =>
      defect instanceof UsageError
        ? say(2, `${defect.message}\n(see effect-tableflip ${argv[2] ?? ""} --help)`.replace("  ", " "))
        : Effect.die(defect)
    )
  )
