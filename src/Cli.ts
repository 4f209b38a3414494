/**
 * The `effect-tableflip` command:
 *
 *   effect-tableflip run [--pid-file F] [--upgrade-timeout D] [--probation D] -- <command...>
 *   effect-tableflip upgrade --pid-file F [--timeout D]
 *
 * `run` keeps one pid for the service's whole life (a container's PID 1, a
 * terminal, supervisord): it keeps the listening sockets, starts the app as
 * its child through the handover protocol, upgrades it on SIGHUP, stops it on
 * SIGTERM / SIGINT (Ctrl-C), and exits with the app's exit code.
 *
 * `upgrade` signals the process in a PID file (an app, or a runner), waits
 * for the outcome that process records beside the PID file, prints it, and
 * exits 0 (upgraded), 1 (the upgrade failed; the old generation serves on),
 * 2 (nothing to signal) or 3 (no outcome within the timeout).
 *
 * @since 0.2.0
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Runner from "./internal/runner.js"
import * as PidFile from "./PidFile.js"

/**
 * The exit code the command chose; `bin` exits with it.
 *
 * @since 0.2.0
 * @category models
 */
export const exitCode = { current: 0 }

const duration = (name: string, fallback: string) =>
  Options.text(name).pipe(
    Options.withDefault(fallback),
    Options.mapEffect((text) =>
      Effect.try({
        try: () => Duration.decode(text as Duration.DurationInput),
        catch: () => `--${name}: ${JSON.stringify(text)} is not a duration (try "30 seconds")`
      }).pipe(Effect.mapError((message) => ValidationError.invalidValue(HelpDoc.p(message))))
    )
  )

const run = Command.make("run", {
  pidFile: Options.file("pid-file").pipe(
    Options.withDescription("write the runner's pid here, and the outcome of each upgrade beside it"),
    Options.optional
  ),
  upgradeTimeout: duration("upgrade-timeout", "1 minute"),
  probation: duration("probation", "0 millis"),
  command: Args.text({ name: "command" }).pipe(Args.atLeast(1))
}, (options) =>
  Runner.run({
    command: options.command,
    pidFile: Option.getOrUndefined(Option.map(options.pidFile, (path) => Path.resolve(path))),
    upgradeTimeout: options.upgradeTimeout,
    probation: options.probation
  }).pipe(
    Effect.tap((code) => {
      exitCode.current = code
    }),
    Effect.tapError((error) =>
      Effect.sync(() => {
        exitCode.current = 1
        process.stderr.write(`effect-tableflip run: ${error.message}\n`)
      })
    ),
    Effect.ignore,
    Effect.scoped
  )).pipe(Command.withDescription("run an app under a runner that keeps one pid and upgrades it on SIGHUP"))

/** Waits until the outcome file records an attempt by `pid` that began at or after `since`. */
const awaitOutcome = (pidFile: string, pid: number, since: number) =>
  Effect.async<PidFile.Outcome>((resume) => {
    const file = PidFile.outcomePath(pidFile)
    const check = () => {
      let outcome: PidFile.Outcome
      try {
        outcome = JSON.parse(Fs.readFileSync(file, "utf8")) as PidFile.Outcome
      } catch {
        return
      }
      if (outcome.pid === pid && outcome.startedAt >= since) {
        watcher.close()
        resume(Effect.succeed(outcome))
      }
    }
    // The outcome is renamed into place: watch the directory, not the file.
    const watcher = Fs.watch(Path.dirname(file), check)
    check()
    return Effect.sync(() => watcher.close())
  })

const upgrade = Command.make("upgrade", {
  pidFile: Options.file("pid-file").pipe(Options.withDescription("the PID file of the app or the runner")),
  timeout: duration("timeout", "2 minutes")
}, ({ pidFile, timeout }) =>
  Effect.gen(function*() {
    const say = (code: number, text: string) =>
      Effect.sync(() => {
        exitCode.current = code
        ;(code === 0 ? process.stdout : process.stderr).write(`${text}\n`)
      })
    const pid = yield* Effect.either(PidFile.read(pidFile))
    if (pid._tag === "Left") return yield* say(2, pid.left.message)
    const since = Date.now()
    try {
      process.kill(pid.right, "SIGHUP")
    } catch (error) {
      return yield* say(2, `cannot signal pid ${pid.right} from ${pidFile}: ${(error as NodeJS.ErrnoException).code}`)
    }
    const outcome = yield* awaitOutcome(pidFile, pid.right, since).pipe(Effect.timeout(timeout), Effect.option)
    if (outcome._tag === "None") {
      return yield* say(3, `no outcome from pid ${pid.right} within ${Duration.format(timeout)}`)
    }
    const { child, error } = outcome.value
    return yield* outcome.value.outcome === "upgraded"
      ? say(0, `upgraded: pid ${pid.right} -> ${child}`)
      : say(1, `upgrade failed: ${error?._tag}: ${error?.message}`)
  })).pipe(Command.withDescription("upgrade the process in a PID file and wait for the outcome"))

/**
 * The `effect-tableflip` command with its subcommands.
 *
 * @since 0.2.0
 * @category commands
 */
export const command = Command.make("effect-tableflip").pipe(Command.withSubcommands([run, upgrade]))

/**
 * Parses `argv` (as `process.argv`) and runs the command.
 *
 * @since 0.2.0
 * @category commands
 */
export const main = Command.run(command, { name: "effect-tableflip", version: "0.2.0" })
