/**
 * The library's metrics, as named constants (the Effect 4 build: the same
 * names, descriptions and boundaries as the Effect 3 one). They are recorded
 * with Effect's `Metric` module, so any metrics exporter wired into the
 * runtime (OpenTelemetry, Prometheus) picks them up.
 *
 * @since 0.1.0
 */
import * as Metric from "effect/Metric"
import * as Specs from "./internal/metricSpecs.js"

/**
 * Upgrades attempted by this generation, with the attribute `outcome`:
 * `upgraded`, or the tag of the error (`ChildExited`, `UpgradeTimeout`, ...).
 *
 * @since 0.1.0
 * @category metrics
 */
export const upgrades = Metric.counter(Specs.upgrades.name, Specs.upgrades.options)

/**
 * Time from the start of a successful upgrade to the new generation's
 * readiness, in milliseconds.
 *
 * @since 0.1.0
 * @category metrics
 */
export const upgradeDuration = Metric.histogram(Specs.upgradeDuration.name, {
  description: Specs.upgradeDuration.description,
  boundaries: Metric.exponentialBoundaries(Specs.upgradeDuration.boundaries)
})
