/**
 * `effect-tableflip run`: parses the runner's options (they end at `--` or at
 * the app's command) and runs the runner with them.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Path from "node:path"
import * as Fx from "../fx.js"
import * as Runner from "../runner.js"
import { parseOptions, say, splitRun, UsageError } from "./parse.js"
import { commandHelp, COMMANDS } from "./spec.js"

/** `effect-tableflip run`: the runner, until the app exits or is stopped. */
export const run = (args: ReadonlyArray<string>) => {
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
    Fx.catchAll((error) => say(1, `effect-tableflip run: ${error.message}`)),
    Effect.scoped,
    Effect.provide(options.format("log-format"))
  )
}
