/**
 * The library's metrics as data: names, descriptions, histogram boundaries. `Metrics.ts` (Effect 3)
 * and `Metrics.effect4.ts` (Effect 4) build the same metrics from it with their major's `Metric`.
 *
 * @internal
 */

/** @internal */
export const upgrades = {
  name: "tableflip_upgrades_total",
  options: { description: "Upgrades attempted, by outcome", incremental: true }
} as const

/** @internal */
export const upgradeDuration = {
  name: "tableflip_upgrade_duration_ms",
  description: "Start of an upgrade to the new generation's readiness",
  boundaries: { start: 25, factor: 2, count: 12 }
} as const
