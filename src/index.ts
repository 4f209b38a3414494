/**
 * effect-tableflip: zero-downtime upgrades for Node.js network services.
 *
 * @since 0.1.0
 */

/**
 * A bounded, graceful drain for `node:http` servers.
 *
 * @since 0.1.0
 */
export * as Drain from "./Drain.js"

/**
 * The descriptor registry: listeners as scoped resources that survive an upgrade.
 *
 * @since 0.1.0
 */
export * as Fds from "./Fds.js"

/**
 * The library's metrics, as named constants.
 *
 * @since 0.1.0
 */
export * as Metrics from "./Metrics.js"

/**
 * An atomic, symlink-safe PID file.
 *
 * @since 0.1.0
 */
export * as PidFile from "./PidFile.js"

/**
 * Every way an upgrade, a listener or the handover can fail.
 *
 * @since 0.1.0
 */
export * as UpgradeError from "./UpgradeError.js"

/**
 * The upgrade lifecycle of one generation, as a scoped layer.
 *
 * @since 0.1.0
 */
export * as Upgrader from "./Upgrader.js"

/**
 * A stand-in Upgrader for tests and for platforms without fd inheritance.
 *
 * @since 0.1.0
 */
export * as UpgraderTest from "./UpgraderTest.js"

/**
 * Typed state handed from one generation to the next.
 *
 * @since 0.2.0
 */
export * as State from "./State.js"

/**
 * Handover between processes that did not start each other, through a directory.
 *
 * @since 0.2.0
 */
export * as DirectoryUpgrader from "./DirectoryUpgrader.js"

/**
 * Warms a new generation's `node:http` server before it takes traffic.
 *
 * @since 1.0.0
 */
export * as Warmup from "./Warmup.js"
