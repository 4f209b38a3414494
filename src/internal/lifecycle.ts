/**
 * The upgrade state machine of one generation.
 *
 *   Starting --ready--> Ready --upgrade--> Upgrading --child ready--> Upgraded
 *                         ^                    |
 *                         +---- child failed --+
 *   any state but Upgraded --stop--> Stopped
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
import * as Ref from "effect/Ref"
import * as Path from "node:path"
import * as Metrics from "../Metrics.js"
import * as PidFile from "../PidFile.js"
import type { UpgradeError } from "../UpgradeError.js"
import {
  AlreadyUpgraded,
  NotReady,
  NotSupported,
  ParentNotExited,
  SpawnError,
  StateError,
  Stopped,
  UnregisteredListener,
  UpgradeInProgress
} from "../UpgradeError.js"
import type { ExitReason, Options, Prepared, Upgraded, Upgrader } from "../Upgrader.js"
import * as CompileCache from "./compileCache.js"
import * as UpgradeErrors from "./errors.js"
import * as Link from "./link.js"
import * as Log from "./log.js"
import * as Notify from "./notify.js"
import * as Protocol from "./protocol.js"
import { type Handover, Registry } from "./registry.js"
import * as Spawn from "./spawn.js"
import * as Systemd from "./systemd.js"

/** @internal */
export type Lifecycle = Upgrader["Type"] & {
  readonly registry: Registry
  readonly prepare: Effect.Effect<Prepared, UpgradeError>
}

/** A prepared next generation, parked, and the files it inherited when it started. */
interface Parked {
  readonly child: Spawn.Child
  readonly files: string
}

type State =
  | { readonly _tag: "Starting" }
  | { readonly _tag: "Ready" }
  | { readonly _tag: "Upgrading"; readonly childPid: number | undefined }
  | { readonly _tag: "Upgraded"; readonly childPid: number }
  | { readonly _tag: "Stopped" }

/** @internal */
export const DEFAULT_MAX_STATE_BYTES = 64 * 1024 * 1024

/** @internal */
export const DEFAULT_UPGRADE_TIMEOUT = Duration.minutes(1)

/** @internal */
export const make = Effect.fnUntraced(function*(options: Options) {
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
  // Only a first generation takes systemd's sockets; later ones get them through the handover.
  const inherited = link?.inherited ?? Systemd.take()
  const generation = manifest?.generation ?? 1
  const cwd = manifest?.cwd ?? process.cwd()
  const timeout = Duration.decode(options.upgradeTimeout ?? DEFAULT_UPGRADE_TIMEOUT)
  const probation = Duration.decode(options.probation ?? Duration.zero)
  const pidFile = options.pidFile === undefined || options.pidFile === ""
    ? undefined
    : Path.resolve(cwd, options.pidFile)

  const state = yield* Ref.make<State>({ _tag: "Starting" })
  const exitReason = yield* Deferred.make<ExitReason>()
  const stopSignal = yield* Deferred.make<void>()
  const scope = yield* Effect.scope
  // Plain flags, read synchronously by listener finalizers.
  let readied = false
  let upgraded = false
  let pending: Fiber.RuntimeFiber<Upgraded, UpgradeError> | undefined
  let parked: Parked | undefined
  // `prepare` and the start of `upgrade` take turns: an upgrade asked for while a generation
  // is being prepared waits for it (bounded by the timeout) and then takes it over.
  const gate = yield* Effect.makeSemaphore(1)

  const registry = new Registry(inherited, {
    // A generation that never became ready must leave the paths its parent serves alone.
    mayUnlink: (boundHere) => !upgraded && (boundHere || readied || manifest === undefined)
  })

  const notify = Notify.make()

  Log.identify(`generation ${generation}`)

  const supervised = link?.supervised === true

  const ready = Effect.gen(function*() {
    // Under a runner the service's pid is the runner's, and so is the PID file.
    if (pidFile !== undefined && !supervised) yield* PidFile.write(pidFile)
    const closed = registry.closeUnclaimed()
    if (closed.length > 0) yield* Log.info(`closed inherited descriptors nobody claimed: ${closed.join(", ")}`)
    readied = true
    yield* Ref.update(state, (s): State => s._tag === "Starting" ? { _tag: "Ready" } : s)
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
      yield* notify(["READY", "1"], ["MAINPID", String(process.pid)], ["STATUS", `generation ${generation} serving`])
    }
    yield* Log.info("ready")
  }).pipe(Effect.withSpan("Upgrader.ready"))

  // A new generation writes the PID file just before it says it is ready; if it died right
  // there, the file names a dead process while this one serves on.
  const reclaimPidFile = pidFile === undefined ? Effect.void : PidFile.read(pidFile).pipe(
    Effect.flatMap((pid) => pid === process.pid ? Effect.void : PidFile.write(pidFile)),
    Effect.catchAll((error) => Log.warning(error.message))
  )

  // Whether this generation may start (or prepare) the next one now.
  const admit = (s: State, parentAlive: boolean): UpgradeError | undefined => {
    switch (s._tag) {
      case "Starting":
        return new NotReady({ pid: process.pid })
      case "Upgrading":
        return new UpgradeInProgress({ childPid: s.childPid })
      case "Upgraded":
        return new AlreadyUpgraded({ childPid: s.childPid })
      case "Stopped":
        return new Stopped({ childPid: undefined })
      case "Ready":
        return parentAlive ? new ParentNotExited({ parentPid: manifest!.predecessorPid ?? link!.parentPid }) : undefined
    }
  }

  const parentAlive = Effect.suspend(() =>
    link === undefined ? Effect.succeed(false) : Effect.map(Deferred.isDone(link.predecessorGone), (gone) => !gone)
  )

  const begin = Effect.flatMap(
    parentAlive,
    (alive) =>
      Ref.modify(state, (s): [Either.Either<void, UpgradeError>, State] => {
        const refused = admit(s, alive)
        return refused === undefined
          ? [Either.right(undefined), { _tag: "Upgrading", childPid: undefined }]
          : [Either.left(refused), s]
      }).pipe(Effect.flatten)
  ).pipe(gate.withPermits(1))

  const command = (): Spawn.Command => ({
    execPath: options.command?.execPath ?? process.execPath,
    args: options.command?.args ?? [...process.execArgv, ...process.argv.slice(1)],
    cwd: options.command?.cwd ?? cwd,
    env: CompileCache.handOn(options.command?.env ?? process.env)
  })

  // Until `ready` the child has a timeout; after it, a probation during which this generation
  // keeps accepting, so a child that dies there takes nothing with it.
  const awaitChild = (
    child: Spawn.Child,
    go?: { readonly manifest: Protocol.Manifest; readonly handover: Handover }
  ): Effect.Effect<Upgraded, UpgradeError> =>
    Effect.as(Spawn.awaitReady(child, { timeout, probation, stop: stopSignal, go }), { pid: child.pid })

  // Without probation a child that dies after `ready` takes the listeners with it, since
  // this generation has let them go; say so loudly while this one is still draining.
  const watchSuccessor = (child: Spawn.Child) =>
    Deferred.await(child.exited).pipe(
      Effect.flatMap(({ code, signal }) =>
        Log.error(
          `the new generation (pid ${child.pid}) ${
            signal !== null ? `was killed by ${signal}` : `exited with code ${code}`
          } after it was ready, while this generation drains; its listeners are gone with it. ` +
            "Set `probation` to keep them until the new generation has proven itself"
        )
      ),
      // Forked from a release, which is uninterruptible: without this, closing the scope would wait for the child.
      Effect.interruptible,
      Effect.forkIn(scope)
    )

  const checkStrays = Effect.suspend((): Effect.Effect<void, SpawnError | UnregisteredListener> => {
    let addresses: ReadonlyArray<string>
    try {
      addresses = registry.strays()
    } catch (cause) {
      // Reading /proc fails this way when the process is out of fds; spawning would fail next.
      const { args, execPath } = command()
      return Effect.fail(new SpawnError({ command: [execPath, ...args].join(" "), cause }))
    }
    if (addresses.length === 0) return Effect.void
    const error = new UnregisteredListener({ addresses })
    return options.unregisteredListeners === "warn" ? Log.warning(error.message) : Effect.fail(error)
  })

  const stateProviders = new Map<string, Effect.Effect<unknown, StateError>>()
  const maxStateBytes = options.maxStateBytes ?? DEFAULT_MAX_STATE_BYTES
  // Taken when the upgrade starts: what changes after that stays with the old generation.
  const collectState = Effect.gen(function*() {
    if (stateProviders.size === 0) return undefined
    const values: Record<string, unknown> = {}
    for (const [key, snapshot] of stateProviders) values[key] = yield* snapshot
    const text = yield* Effect.try({
      try: () => JSON.stringify(values),
      catch: (error) =>
        new StateError({
          key: [...stateProviders.keys()].join(", "),
          reason: "Encode",
          detail: `the encoded state is not JSON: ${(error as Error).message}`
        })
    })
    const bytes = Buffer.byteLength(text)
    if (bytes > maxStateBytes) {
      return yield* new StateError({
        key: [...stateProviders.keys()].join(", "),
        reason: "TooLarge",
        detail: `${bytes} bytes encoded, over the limit of ${maxStateBytes} (option maxStateBytes)`
      })
    }
    return text
  })

  // Strays and state first, outside the uninterruptible acquire: a user's snapshot may hang,
  // and the timeout, stop and interruption must still reach it.
  const attempt = (startedAt: number) =>
    Effect.zipRight(
      checkStrays,
      collectState.pipe(Effect.timeoutFail({
        duration: timeout,
        onTimeout: () =>
          new StateError({
            key: [...stateProviders.keys()].join(", "),
            reason: "Encode",
            detail: `the snapshot did not complete within ${Duration.format(timeout)}`
          })
      }))
    ).pipe(
      Effect.flatMap(attemptWith),
      // Recorded before `exit` completes: the app's shutdown may interrupt the caller right after.
      Effect.onExit((exit) => recordOutcome(startedAt, exit)),
      Effect.onExit((exit) =>
        Exit.isSuccess(exit)
          ? Effect.sync(() => {
            upgraded = true
          }).pipe(
            Effect.zipRight(notify(
              ["MAINPID", String(exit.value.pid)],
              ["READY", "1"],
              ["STATUS", `generation ${generation + 1} serving`]
            )),
            Effect.zipRight(Ref.set(state, { _tag: "Upgraded", childPid: exit.value.pid })),
            Effect.zipRight(Deferred.succeed(exitReason, "upgraded")),
            Effect.zipRight(Log.info(`upgraded to generation ${generation + 1} (pid ${exit.value.pid}); draining`))
          )
          : Ref.update(state, (s): State => s._tag === "Upgrading" ? { _tag: "Ready" } : s).pipe(
            Effect.zipRight(reclaimPidFile),
            Effect.zipRight(
              notify(["READY", "1"], [
                "STATUS",
                `generation ${generation} serving; upgrade failed: ${Cause.squash(exit.cause)}`
              ])
            )
          )
      )
    )

  const nextManifest = (
    fds: ReadonlyArray<Protocol.Descriptor>,
    extra: { readonly state?: boolean; readonly prepared?: boolean }
  ): Protocol.Manifest => ({
    version: Protocol.VERSION,
    generation: generation + 1,
    parentPid: process.pid,
    cwd,
    fds,
    ...Protocol.upgradeTimeoutField(timeout),
    ...extra
  })

  // What a prepared generation inherited at its start must still be what the registry holds.
  const filesOf = (handover: Pick<Handover, "descriptors" | "fds">): string =>
    JSON.stringify([handover.descriptors.filter((d) => d.kind === "file"), handover.fds])

  /** Takes the parked generation for this upgrade if it can serve it; otherwise lets it go. */
  const takeParked = (handover: Handover) =>
    Effect.gen(function*() {
      const candidate = parked
      parked = undefined
      if (candidate === undefined || (yield* Deferred.isDone(candidate.child.exited))) return undefined
      if (filesOf(handover) === candidate.files) return candidate.child
      yield* Log.info(
        `the prepared generation (pid ${candidate.child.pid}) inherited other files than are registered now; ` +
          "starting the next generation afresh"
      )
      yield* candidate.child.kill
      return undefined
    })

  const attemptWith = (stateText: string | undefined) =>
    Effect.acquireUseRelease(
      Effect.gen(function*() {
        const handover = { ...(yield* registry.handover()), state: stateText }
        const manifest = nextManifest(handover.descriptors, stateText === undefined ? {} : { state: true })
        const prepared = yield* takeParked(handover)
        const child = prepared ?? (yield* Spawn.spawn(command(), manifest, handover).pipe(
          Effect.tapError(() => Effect.sync(() => registry.settle(false)))
        ))
        yield* Ref.update(state, (s): State => s._tag === "Upgrading" ? { _tag: "Upgrading", childPid: child.pid } : s)
        yield* Log.info(
          `${prepared === undefined ? "started" : "handing over to the prepared"} generation ${
            generation + 1
          } (pid ${child.pid}) with ${handover.descriptors.length} descriptors`
        )
        return { child, go: prepared === undefined ? undefined : { manifest, handover } }
      }),
      // The sockets are sent inside the race with the child's exit, the timeout and stop.
      ({ child, go }) => awaitChild(child, go),
      ({ child }, exit) =>
        Effect.zipRight(
          Exit.isSuccess(exit) ? Effect.zipRight(child.detach, watchSuccessor(child)) : child.kill,
          Effect.sync(() => registry.settle(Exit.isSuccess(exit)))
        )
    )

  /** Kills the parked generation, if there is one, without a word from its watcher. */
  const discardParked = Effect.suspend(() => {
    const candidate = parked
    parked = undefined
    return candidate === undefined ? Effect.void : candidate.child.kill
  })

  // A parked generation that dies costs nothing: the next upgrade starts one afresh.
  const watchParked = (child: Spawn.Child) =>
    Deferred.await(child.exited).pipe(
      Effect.flatMap(({ code, signal }) => {
        if (parked?.child !== child) return Effect.void
        parked = undefined
        return Log.warning(
          `the prepared generation (pid ${child.pid}) ${
            signal !== null ? `was killed by ${signal}` : `exited with code ${code}`
          } while parked; the next upgrade starts one afresh`
        )
      }),
      Effect.forkIn(scope)
    )

  const prepareSteps = (startedAt: number) =>
    Effect.gen(function*() {
      const refused = admit(yield* Ref.get(state), yield* parentAlive)
      if (refused !== undefined) return yield* refused
      // Under a runner the runner starts, and parks, every generation.
      if (supervised) return yield* fromRunner(link!.requestPrepare)
      if (parked !== undefined) {
        yield* Log.info(`replacing the prepared generation (pid ${parked.child.pid})`)
        yield* discardParked
      }
      // Refused now rather than at the upgrade; and the check is warm (the addon loaded) by then.
      yield* checkStrays
      const files = yield* registry.registeredFiles()
      const child = yield* Effect.acquireUseRelease(
        Spawn.spawn(command(), nextManifest(files.descriptors, { prepared: true }), { ...files, sockets: [] }),
        (child) =>
          Log.info(`preparing generation ${generation + 1} (pid ${child.pid})`).pipe(
            Effect.zipRight(Spawn.awaitParked(child, { timeout, stop: stopSignal })),
            Effect.as(child)
          ),
        (child, exit) => Exit.isSuccess(exit) ? Effect.void : child.kill
      )
      parked = { child, files: filesOf(files) }
      yield* watchParked(child)
      yield* Log.info(
        `generation ${generation + 1} (pid ${child.pid}) is prepared; the next upgrade hands it the descriptors`
      )
      return { pid: child.pid }
    }).pipe(
      gate.withPermits(1),
      Effect.onExit((exit) =>
        pidFile === undefined || supervised
          ? Effect.void
          : UpgradeErrors.recordOutcome(pidFile, startedAt, exit, false, true)
      ),
      Effect.tapError((error) => Log.warning(`prepare failed: ${error.message}`)),
      Effect.withLogSpan("prepare"),
      Effect.withSpan("Upgrader.prepare")
    )

  const prepare = Effect.suspend(() => prepareSteps(Date.now()))

  /** The runner's answer to a request, as this generation's own outcome. */
  const fromRunner = (request: Effect.Effect<Protocol.UpgradeResult | undefined>) =>
    Effect.flatMap(request, (result): Effect.Effect<{ readonly pid: number }, UpgradeError> =>
      result === undefined
        ? new SpawnError({ command: "the runner", cause: "the runner went away" })
        : result._tag === "Upgraded"
        ? Effect.succeed({ pid: result.pid })
        : Effect.fail(UpgradeErrors.revive(result.error)))

  // Under a runner the runner starts the next generation; its answer ends this attempt.
  const viaRunner = Effect.suspend(() => fromRunner(link!.requestUpgrade)).pipe(
    // On interruption too, or every later upgrade would find one in progress.
    Effect.onExit((exit) =>
      Exit.isSuccess(exit)
        ? Effect.void
        : Ref.update(state, (s): State => s._tag === "Upgrading" ? { _tag: "Ready" } : s)
    )
  )

  const record = <A>(self: Effect.Effect<A, UpgradeError>) =>
    Effect.timed(self).pipe(
      Effect.tap(([duration]) => Metrics.upgradeDuration(Effect.succeed(Duration.toMillis(duration)))),
      Effect.map(([, value]) => value),
      Effect.tapBoth({
        onFailure: (error) => Metric.increment(Metric.tagged(Metrics.upgrades, "outcome", error._tag)),
        onSuccess: () => Metric.increment(Metric.tagged(Metrics.upgrades, "outcome", "upgraded"))
      })
    )

  // For `effect-tableflip upgrade`, which signalled this process and waits for the answer.
  const recordOutcome = (startedAt: number, exit: Exit.Exit<Upgraded, UpgradeError>) =>
    pidFile === undefined || supervised ||
      // Folded signals: the attempt in flight, or the one that already succeeded, has the answer.
      (Exit.isFailure(exit) &&
        (Cause.squash(exit.cause) instanceof UpgradeInProgress || Cause.squash(exit.cause) instanceof AlreadyUpgraded))
      ? Effect.void
      : UpgradeErrors.recordOutcome(pidFile, startedAt, exit, true)

  const upgradeSteps = (startedAt: number) =>
    Effect.gen(function*() {
      yield* begin.pipe(Effect.tapError((error) => recordOutcome(startedAt, Exit.fail(error))))
      yield* notify(
        ["RELOADING", "1"],
        ["MONOTONIC_USEC", Notify.monotonicUsec()],
        ["STATUS", `starting generation ${generation + 1}`]
      )
      // The attempt lives in the layer's scope, so closing the layer kills a pending child;
      // interrupting the caller interrupts the attempt too.
      const fiber = yield* Effect.forkIn(supervised ? viaRunner : attempt(startedAt), scope)
      pending = fiber
      return yield* Fiber.join(fiber).pipe(Effect.onInterrupt(() => Fiber.interrupt(fiber)))
    }).pipe(
      record,
      Effect.tapError((error) => Log.warning(`upgrade failed: ${error.message}`)),
      Effect.withLogSpan("upgrade"),
      Effect.withSpan("Upgrader.upgrade")
    )

  const upgrade = Effect.suspend(() => upgradeSteps(Date.now()))

  const stop = Effect.gen(function*() {
    const previous = yield* Ref.getAndUpdate(state, (s): State => s._tag === "Upgraded" ? s : { _tag: "Stopped" })
    if (previous._tag === "Upgraded" || previous._tag === "Stopped") return
    yield* notify(["STOPPING", "1"], ["STATUS", "stopping"])
    yield* Deferred.succeed(stopSignal, undefined)
    // After the signal, which ends a prepare in flight: then the parked one, if any, goes.
    yield* gate.withPermits(1)(discardParked)
    // By the time `exit` completes, a pending new generation is killed and reaped,
    // and its `upgrade` caller has its Stopped error.
    if (pending !== undefined) yield* Fiber.await(pending)
    yield* Deferred.succeed(exitReason, "stopped")
    // Stopped for good: the PID file goes too, unless a newer process has written it since.
    if (pidFile !== undefined && !supervised) {
      yield* PidFile.removeIfOwn(pidFile).pipe(Effect.catchAll((error) => Log.warning(error.message)))
    }
    yield* Log.info("stopped")
  })

  // Released because the app failed: say so before "stopped", which would otherwise read as the cause.
  yield* Effect.addFinalizer((exit) =>
    Exit.isFailure(exit) && !Exit.isInterrupted(exit)
      ? Effect.zipRight(Log.error(`the app failed: ${Cause.squash(exit.cause)}; stopping`), stop)
      : stop
  )
  if (supervised) {
    // A message, not a signal: a second SIGINT after a terminal's Ctrl-C would kill an app
    // whose runtime (NodeRuntime.runMain) handles only the first.
    yield* Deferred.await(link!.stopRequested).pipe(Effect.zipRight(stop), Effect.forkScoped)
    // The runner has the next generation ready: step down.
    yield* Deferred.await(link!.exitRequested).pipe(
      Effect.tap(() => {
        upgraded = true
      }),
      Effect.flatMap((childPid) =>
        Ref.update(state, (s): State => s._tag === "Stopped" ? s : { _tag: "Upgraded", childPid })
      ),
      Effect.zipRight(Deferred.succeed(exitReason, "upgraded")),
      Effect.zipRight(Log.info("the runner started the next generation; stepping down")),
      Effect.forkScoped
    )
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
    upgrade,
    exit: Deferred.await(exitReason),
    stop,
    prepare,
    waitForParent: link === undefined ? Effect.void : Deferred.await(link.predecessorGone),
    offerState: (key, snapshot) =>
      Effect.acquireRelease(
        Effect.sync(() => stateProviders.set(key, snapshot)),
        () => Effect.sync(() => stateProviders.delete(key))
      ),
    inheritedState: link?.state,
    unready: (reason) => link === undefined ? Effect.void : link.notifyUnready(reason),
    registry
  } satisfies Lifecycle
})
