/**
 * `Upgrader.config`: the settings read from the environment, and how the
 * options given in code win over them.
 *
 * @internal
 */
import * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import * as Option from "effect/Option"
import type { Options } from "../Upgrader.js"
import * as Durations from "./duration.js"
import * as Fx from "./fx.js"
import * as Lifecycle from "./lifecycle.js"

/** A duration in either spelling; a wrong one names the variable (Config adds it) and the forms. */
const durationConfig = (name: string): Config.Config<Duration.Duration> =>
  Fx.configString(Config, name).pipe(Fx.configRefine(Config, name, (text: string) => {
    const duration = Durations.parse(text)
    return duration === undefined
      ? Fx.fail(`${JSON.stringify(text)} is not a duration; use ${Durations.FORMS}`)
      : Fx.succeed(duration)
  }))

/** @internal */
export const config: Config.Config<Options> = Config.all({
  upgradeTimeout: durationConfig("TABLEFLIP_UPGRADE_TIMEOUT").pipe(
    Config.withDefault(Lifecycle.DEFAULT_UPGRADE_TIMEOUT)
  ),
  pidFile: Config.option(Fx.configString(Config, "TABLEFLIP_PID_FILE")),
  probation: durationConfig("TABLEFLIP_PROBATION").pipe(Config.withDefault(Duration.zero))
}).pipe(Config.map(({ pidFile, probation, upgradeTimeout }) => ({
  upgradeTimeout,
  probation,
  pidFile: Option.getOrUndefined(pidFile)
})))

/** `options` over what `config` read from the environment. @internal */
export const merge = (options: Options, fromEnv: Options): Options => ({
  upgradeTimeout: options.upgradeTimeout ?? fromEnv.upgradeTimeout,
  pidFile: options.pidFile ?? fromEnv.pidFile,
  probation: options.probation ?? fromEnv.probation,
  maxStateBytes: options.maxStateBytes,
  command: options.command,
  unregisteredListeners: options.unregisteredListeners
})
