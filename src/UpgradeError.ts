/**
 * Every way an upgrade, a listener or the handover can fail, as tagged errors.
 *
 * Each error carries the facts a person needs to act (pid, exit code, signal,
 * path, address) and renders them in its `message`.
 *
 * @since 0.1.0
 */
// Over 300 lines on purpose: the catalog of the public error union, one class each; split, what users `catchTag` on would scatter.
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"

/**
 * The platform cannot pass file descriptors to a child process (Windows).
 * Fall back to `UpgraderTest.layer` there.
 *
 * @since 0.1.0
 * @category errors
 */
export class NotSupported extends Data.TaggedError("NotSupported")<{
  readonly platform: string
  readonly reason: string
}> {
  override get message(): string {
    return `graceful upgrades are not supported on ${this.platform}: ${this.reason}`
  }
}

/**
 * The handover from the previous generation could not be read: the manifest is
 * malformed, of another protocol version, or names a descriptor that is missing
 * or of the wrong kind, or the sockets it names did not arrive in time
 * (`Timeout`: the previous generation's upgrade timeout, or 1 minute). Raised
 * when the `Upgrader` layer is built.
 *
 * @since 0.1.0
 * @category errors
 */
export class HandoverError extends Data.TaggedError("HandoverError")<{
  readonly reason: "Malformed" | "Version" | "MissingFd" | "WrongKind" | "Timeout"
  readonly detail: string
}> {
  override get message(): string {
    return `cannot take over from the previous generation (${this.reason}): ${this.detail}`
  }
}

/**
 * A second `Upgrader` was built while another is live in the same process
 * (`Upgrader.layer`, `Upgrader.layerConfig`, `Upgrader.make` or
 * `DirectoryUpgrader.layer`). A process has one handover and one place in the
 * chain of generations, so it can have one lifecycle: a second one would find
 * the handover already taken, take itself for generation 1, and its `ready`
 * would never reach the previous generation. Provide the layer once and share
 * it. Once the live one's scope has closed, a new one may be built.
 *
 * @since 0.3.0
 * @category errors
 */
export class DuplicateUpgrader extends Data.TaggedError("DuplicateUpgrader")<{
  readonly pid: number
  /** The constructor of the one that is live, such as `"Upgrader.layer"`. */
  readonly live: string
  /** The constructor of the one that was refused. */
  readonly refused: string
}> {
  override get message(): string {
    return `${this.refused}: process ${this.pid} already has a live Upgrader (from ${this.live}), and only one ` +
      "may exist per process: it has one handover and one place in the chain of generations. Provide the layer " +
      "once, at the top of the program, and share it: one Effect.provide, or the same layer value wherever it is " +
      "needed (Effect builds a layer value once per provide; Layer.memoize makes one value build once across " +
      "provides). A new one may be built once the live one's scope has closed"
  }
}

/**
 * `upgrade` was called before this generation called `ready`.
 *
 * @since 0.1.0
 * @category errors
 */
export class NotReady extends Data.TaggedError("NotReady")<{
  readonly pid: number
}> {
  override get message(): string {
    return `process ${this.pid} is not ready yet: call ready before upgrade`
  }
}

/**
 * `upgrade` was called in a new generation whose previous generation is still
 * running (draining). Retry once `waitForParent` completes.
 *
 * @since 0.1.0
 * @category errors
 */
export class ParentNotExited extends Data.TaggedError("ParentNotExited")<{
  readonly parentPid: number
}> {
  override get message(): string {
    return `the previous generation (pid ${this.parentPid}) has not exited yet; upgrade again once it is gone`
  }
}

/**
 * Another upgrade is in flight; upgrades never queue.
 *
 * @since 0.1.0
 * @category errors
 */
export class UpgradeInProgress extends Data.TaggedError("UpgradeInProgress")<{
  readonly childPid: number | undefined
}> {
  override get message(): string {
    return this.childPid === undefined
      ? "an upgrade is already in progress"
      : `an upgrade is already in progress (new generation pid ${this.childPid})`
  }
}

/**
 * This generation already handed over to a newer one and is on its way out.
 *
 * @since 0.1.0
 * @category errors
 */
export class AlreadyUpgraded extends Data.TaggedError("AlreadyUpgraded")<{
  readonly childPid: number
}> {
  override get message(): string {
    return `already upgraded: pid ${this.childPid} is the new generation`
  }
}

/**
 * The lifecycle was stopped: either before this upgrade began, or while it was
 * pending (the new generation was killed).
 *
 * @since 0.1.0
 * @category errors
 */
export class Stopped extends Data.TaggedError("Stopped")<{
  readonly childPid: number | undefined
}> {
  override get message(): string {
    return this.childPid === undefined
      ? "the upgrader was stopped"
      : `the upgrader was stopped during the upgrade; new generation pid ${this.childPid} was killed`
  }
}

/**
 * The next generation could not be started at all.
 *
 * @since 0.1.0
 * @category errors
 */
export class SpawnError extends Data.TaggedError("SpawnError")<{
  readonly command: string
  readonly cause: unknown
}> {
  override get message(): string {
    return `cannot start the next generation (${this.command}): ${describe(this.cause)}`
  }
}

/**
 * The next generation exited before it signalled readiness. The running
 * generation keeps serving.
 *
 * @since 0.1.0
 * @category errors
 */
export class ChildExited extends Data.TaggedError("ChildExited")<{
  readonly pid: number
  readonly code: number | null
  readonly signal: string | null
}> {
  override get message(): string {
    const how = this.signal !== null ? `was killed by ${this.signal}` : `exited with code ${this.code}`
    return `new generation pid ${this.pid} ${how} before it was ready; the old generation keeps serving`
  }
}

/**
 * The next generation became ready, then exited during the probation period
 * (`Options.probation`). This generation never gave its listeners up: it kept
 * serving throughout, took the PID file back, and can upgrade again.
 *
 * @since 0.2.0
 * @category errors
 */
export class RolledBack extends Data.TaggedError("RolledBack")<{
  readonly pid: number
  readonly code: number | null
  readonly signal: string | null
  readonly probation: Duration.Duration
}> {
  override get message(): string {
    const how = this.signal !== null ? `was killed by ${this.signal}` : `exited with code ${this.code}`
    return `new generation pid ${this.pid} ${how} within its ${
      Duration.format(this.probation)
    } probation after it was ready; rolled back, the old generation keeps serving`
  }
}

/**
 * The next generation's readiness check failed (`Upgrader.readyWhen`): it
 * said so and exited; the running generation keeps serving.
 *
 * @since 0.2.0
 * @category errors
 */
export class HealthCheckFailed extends Data.TaggedError("HealthCheckFailed")<{
  readonly pid: number
  readonly reason: string
}> {
  override get message(): string {
    return `new generation pid ${this.pid} failed its readiness check: ${this.reason}; the old generation keeps serving`
  }
}

/**
 * State handed from one generation to the next (`State`) could not be
 * encoded by the old generation (`Encode`), was over the size limit
 * (`TooLarge`), both of which fail the upgrade before anything starts, or does
 * not decode with the new generation's schema (`Decode`), say because it
 * changed between versions.
 *
 * @since 0.2.0
 * @category errors
 */
export class StateError extends Data.TaggedError("StateError")<{
  readonly key: string
  readonly reason: "Encode" | "TooLarge" | "Decode"
  readonly detail: string
}> {
  override get message(): string {
    return `state ${JSON.stringify(this.key)}: ${this.detail}`
  }
}

/**
 * The coordination directory of `DirectoryUpgrader` cannot be trusted or
 * used: it, or a directory above it, is not this user's (or root's) or others
 * may write to it (`Permissions`, `path` naming that directory), another
 * process is taking over and did not finish in time (`Locked`), the process at
 * the other end of the socket runs as another user (`Peer`), or the owner's
 * answer was broken or did not come within the timeout (`Handover`, naming
 * what the newcomer waited for).
 *
 * @since 0.2.0
 * @category errors
 */
export class DirectoryError extends Data.TaggedError("DirectoryError")<{
  readonly path: string
  readonly reason: "Permissions" | "Locked" | "Peer" | "Handover"
  readonly detail: string
}> {
  override get message(): string {
    return `${this.path}: ${this.detail}`
  }
}

/**
 * The next generation did not signal readiness in time. It was killed
 * (SIGKILL) and reaped; the running generation keeps serving.
 *
 * @since 0.1.0
 * @category errors
 */
export class UpgradeTimeout extends Data.TaggedError("UpgradeTimeout")<{
  readonly pid: number
  readonly timeout: Duration.Duration
  /** `"prepare"`: a prepared generation did not finish loading (`Upgrader.prepare`). */
  readonly phase?: "prepare" | undefined
}> {
  override get message(): string {
    return this.phase === "prepare"
      ? `prepared generation pid ${this.pid} did not finish loading within ${
        Duration.format(this.timeout)
      }; it was killed and this generation keeps serving`
      : `new generation pid ${this.pid} was not ready within ${
        Duration.format(this.timeout)
      }; it was killed and the old generation keeps serving`
  }
}

/**
 * More files are registered than the handover can place without leaking them
 * into processes the application spawns (sockets have no such limit).
 *
 * @since 0.1.0
 * @category errors
 */
export class TooManyDescriptors extends Data.TaggedError("TooManyDescriptors")<{
  readonly count: number
  readonly max: number
}> {
  override get message(): string {
    return `${this.count} files are registered but at most ${this.max} can be handed over; sockets have no limit`
  }
}

/**
 * This process listens on addresses the registry does not know (a server
 * bound with a plain `listen()`): the next generation would find them taken
 * and fail with EADDRINUSE. Nothing was started.
 *
 * @since 0.1.0
 * @category errors
 */
export class UnregisteredListener extends Data.TaggedError("UnregisteredListener")<{
  readonly addresses: ReadonlyArray<string>
}> {
  override get message(): string {
    return `this process listens on ${this.addresses.join(", ")} outside the registry, so the next generation ` +
      "could not bind there; create those listeners with Fds.listen or register them with Fds.addListener " +
      "(or set unregisteredListeners: \"warn\" if the next generation does not need them)"
  }
}

/**
 * A listener could not be created or adopted.
 *
 * @since 0.1.0
 * @category errors
 */
export class ListenError extends Data.TaggedError("ListenError")<{
  readonly address: string
  readonly reason: "AddressInUse" | "NotASocket" | "Failed"
  readonly cause: unknown
}> {
  override get message(): string {
    switch (this.reason) {
      case "AddressInUse":
        return `cannot listen on ${this.address}: it is served by another process (${describe(this.cause)})`
      case "NotASocket":
        return `cannot listen on ${this.address}: a file that is not a socket is in the way; remove it by hand`
      case "Failed":
        return `cannot listen on ${this.address}: ${describe(this.cause)}`
    }
  }
}

/**
 * The PID file could not be written. The running generation is not affected.
 *
 * @since 0.1.0
 * @category errors
 */
export class PidFileError extends Data.TaggedError("PidFileError")<{
  readonly path: string
  readonly cause: unknown
  /** What was being done to the file; `write` when absent. */
  readonly operation?: "read" | "write" | "remove" | undefined
}> {
  override get message(): string {
    return `cannot ${this.operation ?? "write"} PID file ${this.path}: ${describe(this.cause)}`
  }
}

/**
 * A PID file that does not name the process that wrote it, so nothing may be
 * signalled through it: the process is gone (`NotRunning`: the service
 * stopped or crashed), the pid now belongs to a process that started after
 * the file was written (`Reused`), or the file's owner is neither root nor
 * the user the process runs as (`Owner`: someone else could have planted it).
 *
 * @since 0.3.0
 * @category errors
 */
export class StalePidFile extends Data.TaggedError("StalePidFile")<{
  readonly path: string
  readonly pid: number
  readonly reason: "NotRunning" | "Reused" | "Owner"
  readonly detail: string
}> {
  override get message(): string {
    switch (this.reason) {
      case "NotRunning":
        return `the PID file ${this.path} is stale: pid ${this.pid} is not running (the service stopped or crashed)`
      case "Reused":
        return `the PID file ${this.path} is stale: pid ${this.pid} is another process that started after the file ` +
          `was written (${this.detail}); refusing to signal it`
      case "Owner":
        return `the PID file ${this.path} cannot be trusted: ${this.detail}; refusing to signal pid ${this.pid}`
    }
  }
}

/**
 * Every error `Upgrader.upgrade` can fail with.
 *
 * @since 0.1.0
 * @category errors
 */
export type UpgradeError =
  | NotSupported
  | NotReady
  | ParentNotExited
  | UpgradeInProgress
  | AlreadyUpgraded
  | Stopped
  | SpawnError
  | ChildExited
  | HealthCheckFailed
  | StateError
  | RolledBack
  | UpgradeTimeout
  | TooManyDescriptors
  | UnregisteredListener

const describe = (cause: unknown): string =>
  cause instanceof Error ? cause.message : typeof cause === "string" ? cause : String(cause)
