/**
 * The library's metrics, as named constants. They are recorded with
 * Effect's `Metric` module, so any metrics exporter wired into the runtime
 * (OpenTelemetry, Prometheus) picks them up.
 *
 * @since 0.1.0
 */
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"

/**
 * Upgrades attempted by this generation, tagged `outcome`: `upgraded`, or
 * the tag of the error (`ChildExited`, `UpgradeTimeout`, ...).
 *
 * @since 0.1.0
 * @category metrics
 */
export const upgrades = Metric.counter("tableflip_upgrades_total", {
  description: "Upgrades attempted, by outcome",
  incremental: true
})

/**
 * Time from the start of a successful upgrade to the new generation's
 * readiness, in milliseconds.
 *
 * @since 0.1.0
 * @category metrics
 */
export const upgradeDuration = Metric.histogram(
  "tableflip_upgrade_duration_ms",
  MetricBoundaries.exponential({ start: 25, factor: 2, count: 12 }),
  "Start of an upgrade to the new generation's readiness"
)
