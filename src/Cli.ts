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
import * as Effect from "effect/Effect"
import { buildNative } from "./internal/cli/buildNative.js"
import { say, UsageError } from "./internal/cli/parse.js"
import { run } from "./internal/cli/run.js"
import { signalAndAwait } from "./internal/cli/signal.js"
import { usage, VERSION } from "./internal/cli/spec.js"
import * as Fx from "./internal/fx.js"

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
    Fx.catchAllDefect((defect) =>
      defect instanceof UsageError
        ? say(2, `${defect.message}\n(see effect-tableflip ${argv[2] ?? ""} --help)`.replace("  ", " "))
        : Effect.die(defect)
    )
  )
