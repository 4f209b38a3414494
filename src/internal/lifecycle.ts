/**
 * One generation's lifecycle, wired from its rooms: the state machine
 * (`lifecycle/state.ts`, where the diagram is), the successor strategy
 * (`lifecycle/successor.ts`: spawn the next generation, or ask the runner),
 * state handoff (`lifecycle/handoff.ts`), and here the steps that move the
 * machine: `ready`, `upgrade`, `prepare`, `stop`, and what each tells the
 * PID file, systemd and the metrics.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import * as Path from "node:path"
import * as Metrics from "../Metrics.js"
import * as PidFile from "../PidFile.js"
import type { UpgradeError } from "../UpgradeError.js"
import { AlreadyUpgraded, NotSupported, UpgradeInProgress } from "../UpgradeError.js"
import type { ExitReason, Options, Prepared, Upgraded, Upgrader } from "../Upgrader.js"
import * as Announce from "./announce.js"
import * as CompileCache from "./compileCache.js"
import * as UpgradeErrors from "./errors.js"
import * as Handoff from "./lifecycle/handoff.js"
import * as LifecycleState from "./lifecycle/state.js"
import * as Successor from "./lifecycle/successor.js"
import * as Link from "./link.js"
import * as Log from "./log.js"
import * as Protocol from "./protocol.js"
import { Registry } from "./registry.js"
import type * as Spawn from "./spawn.js"
import * as Systemd from "./systemd.js"

/** @internal */
export type Lifecycle = Upgrader["Type"] & { readonly registry: Registry }

/** @internal */
export const DEFAULT_MAX_STATE_BYTES = Handoff.DEFAULT_MAX_STATE_BYTES

/** @internal */
export const DEFAULT_UPGRADE_TIMEOUT = Duration.minutes(1)

/**
 * What tests may change and users may not: not part of `Options`, so no
 * public API carries it.
 *
 * @internal
 */
export interface Internal {
  /** Starts the next generation; a test's fake keeps the lifecycle in-process. Default: `Spawn.spawn`. */
  readonly spawner?: Successor.Spawner | undefined
}

/** @internal */
export const make = Effect.fnUntraced(function*(options: Options, internal: Internal = {}) {
  if (process.platform === "win32") {
    return yield* new NotSupported({
      platform: process.platform,
      reason: "a child process cannot inherit listening sockets by fd; use UpgraderTest.layer"
    })
  }
  const taken = Protocol.take()
  const initial = taken === undefined ? undefined : yield* Either.match(taken, {
    onLeft: Effect.fail,
    onRight: Effect.succeed
  })
  // A prepared generation parks in here until its parent's `go`.
  const link = initial === undefined ? undefined : yield* Link.open(initial)
  const manifest = link?.manifest
  const generation = manifest?.generation ?? 1
  const cwd = manifest?.cwd ?? process.cwd()
  const timeout = Duration.decode(options.upgradeTimeout ?? DEFAULT_UPGRADE_TIMEOUT)
  const supervised = link?.supervised === true
  // Under a runner the service's pid is the runner's, and so are the PID file and its outcomes.
  const pidFile = options.pidFile === undefined || options.pidFile === "" || supervised
    ? undefined
    : Path.resolve(cwd, options.pidFile)

  const machine = LifecycleState.machine()
  const exitReason = yield* Deferred.make<ExitReason>()
  const stopSignal = yield* Deferred.make<void>()
  const scope = yield* Effect.scope
  let pending: Fiber.RuntimeFiber<Upgraded, UpgradeError> | undefined
  // `prepare` and the start of `upgrade` take turns: an upgrade asked for while a generation
  // is being prepared waits for it (bounded by the timeout) and then takes it over.
  const gate = yield* Effect.makeSemaphore(1)

  // Only a first generation takes systemd's sockets; later ones get them through the handover.
  const registry = new Registry(link?.inherited ?? Systemd.take(), {
    mayUnlink: (boundHere) => LifecycleState.mayUnlink(machine.get(), boundHere, manifest === undefined)
  })
  const handoff = Handoff.make(options.maxStateBytes)
  const announce = Announce.make("generation")
  Log.identify(`generation ${generation}`)

  const command = (): Spawn.Command => ({
    execPath: options.command?.execPath ?? process.execPath,
    args: options.command?.args ?? [...process.execArgv, ...process.argv.slice(1)],
    cwd: options.command?.cwd ?? cwd,
    env: CompileCache.handOn(options.command?.env ?? process.env)
  })
  const successor = supervised ? Successor.viaRunner(link!) : Successor.spawning({
    generation,
    cwd,
    registry,
    handoff,
    command,
    timeout,
    probation: Duration.decode(options.probation ?? Duration.zero),
    unregisteredListeners: options.unregisteredListeners,
    stop: stopSignal,
    scope,
    spawner: internal.spawner
  })

  const apply = (event: LifecycleState.Event): Effect.Effect<LifecycleState.State, UpgradeError> =>
    Effect.suspend(() => Either.match(machine.apply(event), { onLeft: Effect.fail, onRight: Effect.succeed }))

  const ready = Effect.gen(function*() {
    if (pidFile !== undefined) yield* PidFile.write(pidFile)
    const closed = registry.closeUnclaimed()
    if (closed.length > 0) yield* Log.info(`closed inherited descriptors nobody claimed: ${closed.join(", ")}`)
    yield* Effect.ignore(apply({ _tag: "MarkReady" }))
    if (supervised && registry.unsupervisable().length > 0) {
      yield* Log.warning(
        `a runner keeps listening sockets only; ${
          registry.unsupervisable().join(", ")
        } will not reach the next generation`
      )
    }
    if (link !== undefined) yield* link.notifyReady(supervised ? registry.listeners() : [])
    // While the previous generation lives, it tells systemd about this one: it is the main pid
    // systemd listens to, and it decides when the upgrade has succeeded (after any probation).
    if (link === undefined || (yield* Deferred.isDone(link.parentGone))) {
      yield* announce.ready(generation)
    }
    yield* Log.info("ready")
  }).pipe(Effect.withSpan("Upgrader.ready"))

  // The event `upgrade` and `prepare` begin with: refused while the previous generation lives.
  const begin = Effect.gen(function*() {
    const parentAlive = link !== undefined && !(yield* Deferred.isDone(link.predecessorGone))
    return {
      _tag: "Begin" as const,
      pid: process.pid,
      parentPid: parentAlive ? manifest!.predecessorPid ?? link!.parentPid : undefined
    }
  })

  // A new generation writes the PID file just before it says it is ready; if it died right
  // there, the file names a dead process while this one serves on.
  const reclaimPidFile = pidFile === undefined ? Effect.void : PidFile.read(pidFile).pipe(
    Effect.flatMap((pid) => pid === process.pid ? Effect.void : PidFile.write(pidFile)),
    Effect.catchAll((error) => Log.warning(error.message))
  )

  const handedOver = (pid: number) =>
    Effect.zipRight(
      announce.upgraded(pid, generation + 1),
      Effect.ignore(apply({ _tag: "Succeeded", childPid: pid }))
    ).pipe(
      Effect.zipRight(Deferred.succeed(exitReason, "upgraded")),
      Effect.zipRight(Log.info(`upgraded to generation ${generation + 1} (pid ${pid}); draining`))
    )

  const upgradeFailed = (cause: Cause.Cause<UpgradeError>) =>
    Effect.ignore(apply({ _tag: "Failed" })).pipe(
      Effect.zipRight(reclaimPidFile),
      Effect.zipRight(
        announce.failed(generation, String(Cause.squash(cause)))
      )
    )

  // For `effect-tableflip upgrade`, which signalled this process and waits for the answer.
  const recordOutcome = (startedAt: number, exit: Exit.Exit<Upgraded, UpgradeError>) =>
    pidFile === undefined ||
      // Folded signals: the attempt in flight, or the one that already succeeded, has the answer.
      (Exit.isFailure(exit) &&
        (Cause.squash(exit.cause) instanceof UpgradeInProgress || Cause.squash(exit.cause) instanceof AlreadyUpgraded))
      ? Effect.void
      : UpgradeErrors.recordOutcome(pidFile, startedAt, exit, true)

  const attempt = (startedAt: number) =>
    successor.upgrade((childPid) => Effect.ignore(apply({ _tag: "Spawned", childPid }))).pipe(
      // Recorded before `exit` completes: the app's shutdown may interrupt the caller right after.
      Effect.onExit((exit) => recordOutcome(startedAt, exit)),
      // On interruption too, or every later upgrade would find one in progress.
      Effect.onExit((exit) =>
        Exit.isFailure(exit)
          ? upgradeFailed(exit.cause)
          : successor.handsOverOnSuccess
          ? handedOver(exit.value.pid)
          : Effect.void
      )
    )

  const metered = <A>(self: Effect.Effect<A, UpgradeError>) =>
    Effect.timed(self).pipe(
      Effect.tap(([duration]) => Metrics.upgradeDuration(Effect.succeed(Duration.toMillis(duration)))),
      Effect.map(([, value]) => value),
      Effect.tapBoth({
        onFailure: (error) => Metric.increment(Metric.tagged(Metrics.upgrades, "outcome", error._tag)),
        onSuccess: () => Metric.increment(Metric.tagged(Metrics.upgrades, "outcome", "upgraded"))
      })
    )

  const upgradeSteps = (startedAt: number) =>
    Effect.gen(function*() {
      yield* gate.withPermits(1)(Effect.flatMap(begin, apply)).pipe(
        Effect.tapError((error) => recordOutcome(startedAt, Exit.fail(error)))
      )
      yield* announce.reloading(generation + 1)
      // The attempt lives in the layer's scope, so closing the layer kills a pending child;
      // interrupting the caller interrupts the attempt too.
      const fiber = yield* Effect.forkIn(attempt(startedAt), scope)
      pending = fiber
      return yield* Fiber.join(fiber).pipe(Effect.onInterrupt(() => Fiber.interrupt(fiber)))
    }).pipe(
      metered,
      Effect.tapError((error) => Log.warning(`upgrade failed: ${error.message}`)),
      Effect.withLogSpan("upgrade"),
      Effect.withSpan("Upgrader.upgrade")
    )

  const prepareSteps = (startedAt: number) =>
    Effect.gen(function*() {
      // Checked, not applied: a prepared generation leaves this one Ready.
      const refused = LifecycleState.refusal(machine.get(), yield* begin)
      if (refused !== undefined) return yield* refused
      return yield* successor.prepare
    }).pipe(
      gate.withPermits(1),
      Effect.onExit((exit) =>
        pidFile === undefined ? Effect.void : UpgradeErrors.recordOutcome(pidFile, startedAt, exit, false, true)
      ),
      Effect.tapError((error) => Log.warning(`prepare failed: ${error.message}`)),
      Effect.withLogSpan("prepare"),
      Effect.withSpan("Upgrader.prepare")
    )

  const stop = Effect.gen(function*() {
    const previous = machine.get()._tag
    if (previous === "Upgraded" || previous === "Stopped") return
    yield* apply({ _tag: "Stop" })
    yield* announce.stopping()
    yield* Deferred.succeed(stopSignal, undefined)
    // After the signal, which ends a prepare in flight: then the parked one, if any, goes.
    yield* gate.withPermits(1)(successor.discard)
    // By the time `exit` completes, a pending new generation is killed and reaped,
    // and its `upgrade` caller has its Stopped error.
    if (pending !== undefined) yield* Fiber.await(pending)
    yield* Deferred.succeed(exitReason, "stopped")
    // Stopped for good: the PID file goes too, unless a newer process has written it since.
    if (pidFile !== undefined) {
      yield* PidFile.removeIfOwn(pidFile).pipe(Effect.catchAll((error) => Log.warning(error.message)))
    }
    yield* Log.info("stopped")
  }).pipe(Effect.ignore)

  // Released because the app failed: say so before "stopped", which would otherwise read as the cause.
  yield* Effect.addFinalizer((exit) =>
    Exit.isFailure(exit) && !Exit.isInterrupted(exit)
      ? Effect.zipRight(Log.error(`the app failed: ${Cause.squash(exit.cause)}; stopping`), stop)
      : stop
  )
  if (supervised) {
    yield* followRunner(link!, {
      stop,
      stepDown: (childPid) => apply({ _tag: "StepDown", childPid }),
      exitReason
    })
  }
  // A runner's first generation follows nobody.
  if (link !== undefined && !(supervised && manifest!.predecessorPid === undefined)) {
    yield* Deferred.await(link.predecessorGone).pipe(
      Effect.zipRight(Log.info(
        `the previous generation (pid ${manifest!.predecessorPid ?? link.parentPid}) has exited`
      )),
      Effect.forkScoped
    )
  }

  return {
    pid: process.pid,
    generation,
    hasParent: link !== undefined,
    ready,
    upgrade: Effect.suspend(() => upgradeSteps(Date.now())),
    prepare: Effect.suspend(() => prepareSteps(Date.now())) as Effect.Effect<Prepared, UpgradeError>,
    exit: Deferred.await(exitReason),
    stop,
    waitForParent: link === undefined ? Effect.void : Deferred.await(link.predecessorGone),
    offerState: handoff.offer,
    inheritedState: link?.state,
    unready: (reason) => link === undefined ? Effect.void : link.notifyUnready(reason),
    registry
  } satisfies Lifecycle
})

/** Under a runner: its `stop` and `exit` messages end this generation. */
const followRunner = (
  link: Link.Link,
  on: {
    readonly stop: Effect.Effect<void>
    readonly stepDown: (childPid: number) => Effect.Effect<unknown, UpgradeError>
    readonly exitReason: Deferred.Deferred<ExitReason>
  }
) =>
  Effect.gen(function*() {
    // A message, not a signal: a second SIGINT after a terminal's Ctrl-C would kill an app
    // whose runtime (NodeRuntime.runMain) handles only the first.
    yield* Deferred.await(link.stopRequested).pipe(Effect.zipRight(on.stop), Effect.forkScoped)
    // The runner has the next generation ready: step down.
    yield* Deferred.await(link.exitRequested).pipe(
      Effect.flatMap((childPid) => Effect.ignore(on.stepDown(childPid))),
      Effect.zipRight(Deferred.succeed(on.exitReason, "upgraded")),
      Effect.zipRight(Log.info("the runner started the next generation; stepping down")),
      Effect.forkScoped
    )
  })
