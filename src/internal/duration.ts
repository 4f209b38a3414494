/**
 * Durations as operators write them: systemd's spelling (`5s`, `1min`,
 * `500ms`, `2h`, `1h 30min`, a bare number of seconds) and Effect's
 * (`5 seconds`, `500 millis`). One parser for the environment and the CLI.
 *
 * @internal
 */
import * as Duration from "effect/Duration"

const UNITS: ReadonlyArray<readonly [number, ReadonlyArray<string>]> = [
  [1e-6, ["ns", "nsec", "nano", "nanos"]],
  [1e-3, ["us", "usec", "µs", "micro", "micros"]],
  [1, ["ms", "msec", "milli", "millis", "millisecond", "milliseconds"]],
  [1e3, ["s", "sec", "secs", "second", "seconds"]],
  [6e4, ["m", "min", "mins", "minute", "minutes"]],
  [36e5, ["h", "hr", "hour", "hours"]],
  [864e5, ["d", "day", "days"]],
  [6048e5, ["w", "week", "weeks"]]
]

const MILLIS = new Map(UNITS.flatMap(([millis, names]) => names.map((name) => [name, millis] as const)))

/** What the error messages list as accepted. */
export const FORMS = `"5s", "1min 30s", "500ms", "2h" (systemd) or "30 seconds" (Effect); a bare number is seconds`

/** The duration `text` spells, or `undefined` if it spells none. */
export const parse = (text: string): Duration.Duration | undefined => {
  const trimmed = text.trim().toLowerCase()
  if (trimmed === "") return undefined
  if (trimmed === "infinity") return Duration.infinity
  let total = 0
  let rest = trimmed
  const part = /^(\d+(?:\.\d+)?)\s*([a-zµ]*)\s*/
  while (rest !== "") {
    const match = part.exec(rest)
    if (match === null) return undefined
    const unit = match[2] === "" ? "s" : match[2]!
    const scale = MILLIS.get(unit)
    if (scale === undefined) return undefined
    total += Number(match[1]) * scale
    rest = rest.slice(match[0].length)
  }
  return Duration.millis(total)
}
