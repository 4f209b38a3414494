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
  ChildExited,
  NotReady,
  NotSupported,
  ParentNotExited,
  RolledBack,
  SpawnError,
  Stopped,
  UnregisteredListener,
  UpgradeInProgress,
  UpgradeTimeout
} from "../UpgradeError.js"
import type { PidFileError } from "../UpgradeError.js"
import * as Link from "./link.js"
import * as Protocol from "./protocol.js"
import { Registry } from "./registry.js"
import * as Spawn from "./spawn.js"
import * as Systemd from "./systemd.js"

/** @internal */
export interface Options {
  readonly upgradeTimeout?: Duration.DurationInput | undefined
  readonly pidFile?: string | undefined
  readonly probation?: Duration.DurationInput | undefined
  readonly unregisteredListeners?: "fail" | "warn" | undefined
  readonly command?:
    | {
      readonly [K in keyof Spawn.Command]?: Spawn.Command[K] | undefined
    }
    | undefined
}

/** @internal */
export type ExitReason = "upgraded" | "stopped"

/** @internal */
export interface Upgraded {
  readonly pid: number
}

/** @internal */
export interface Lifecycle {
  readonly pid: number
  readonly generation: number
  readonly hasParent: boolean
  readonly ready: Effect.Effect<void, PidFileError>
  readonly upgrade: Effect.Effect<Upgraded, UpgradeError>
  readonly exit: Effect.Effect<ExitReason>
  readonly stop: Effect.Effect<void>
  readonly waitForParent: Effect.Effect<void>
  readonly registry: Registry
}

type State =
  | { readonly _tag: "Starting" }
  | { readonly _tag: "Ready" }
  | { readonly _tag: "Upgrading"; readonly childPid: number | undefined }
  | { readonly _tag: "Upgraded"; readonly childPid: number }
  | { readonly _tag: "Stopped" }

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
  const manifest = taken === undefined ? undefined : yield* Either.match(taken, {
    onLeft: Effect.fail,
    onRight: Effect.succeed
  })
  const link = manifest === undefined ? undefined : yield* Link.open(manifest)
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

  const registry = new Registry(inherited, {
    // A generation that never became ready must leave the paths its parent serves alone.
    mayUnlink: (boundHere) => !upgraded && (boundHere || readied || manifest === undefined)
  })

  const annotate = <A, E, R>(self: Effect.Effect<A, E, R>) =>
    Effect.annotateLogs(self, { package: "effect-tableflip", pid: process.pid, generation })

  const ready = Effect.gen(function*() {
    if (pidFile !== undefined) yield* PidFile.write(pidFile)
    const closed = registry.closeUnclaimed()
    if (closed.length > 0) yield* Effect.logInfo("closed inherited descriptors nobody claimed", closed.join(", "))
    readied = true
    yield* Ref.update(state, (s): State => s._tag === "Starting" ? { _tag: "Ready" } : s)
    if (link !== undefined) yield* link.notifyReady
    yield* Effect.logInfo("ready")
  }).pipe(annotate, Effect.withSpan("Upgrader.ready"))

  // A new generation writes the PID file just before it says it is ready; if it died right
  // there, the file names a dead process while this one serves on.
  const reclaimPidFile = pidFile === undefined ? Effect.void : PidFile.read(pidFile).pipe(
    Effect.flatMap((pid) => pid === process.pid ? Effect.void : PidFile.write(pidFile)),
    Effect.catchAll((error) => Effect.logWarning(error.message))
  )

  const begin = Effect.gen(function*() {
    const parentAlive = link !== undefined && !(yield* Deferred.isDone(link.parentGone))
    return yield* Ref.modify(state, (s): [Either.Either<void, UpgradeError>, State] => {
      switch (s._tag) {
        case "Starting":
          return [Either.left(new NotReady({ pid: process.pid })), s]
        case "Upgrading":
          return [Either.left(new UpgradeInProgress({ childPid: s.childPid })), s]
        case "Upgraded":
          return [Either.left(new AlreadyUpgraded({ childPid: s.childPid })), s]
        case "Stopped":
          return [Either.left(new Stopped({ childPid: undefined })), s]
        case "Ready":
          return parentAlive
            ? [Either.left(new ParentNotExited({ parentPid: link!.parentPid })), s]
            : [Either.right(undefined), { _tag: "Upgrading", childPid: undefined }]
      }
    }).pipe(Effect.flatten)
  })

  const command = (): Spawn.Command => ({
    execPath: options.command?.execPath ?? process.execPath,
    args: options.command?.args ?? [...process.execArgv, ...process.argv.slice(1)],
    cwd: options.command?.cwd ?? cwd,
    env: options.command?.env ?? process.env
  })

  // Until `ready` the child has a timeout; after it, a probation during which this generation
  // keeps accepting, so a child that dies there takes nothing with it.
  const awaitChild = (child: Spawn.Child): Effect.Effect<Upgraded, UpgradeError> =>
    Deferred.await(child.ready).pipe(
      Effect.raceFirst(Effect.zipRight(Effect.sleep(timeout), new UpgradeTimeout({ pid: child.pid, timeout }))),
      Effect.zipRight(
        Duration.isZero(probation) ? Effect.void : Effect.logInfo("the next generation is ready; probation").pipe(
          Effect.annotateLogs({ childPid: child.pid }),
          Effect.zipRight(Effect.sleep(probation))
        )
      ),
      Effect.as({ pid: child.pid }),
      Effect.raceFirst(Effect.flatMap(
        Deferred.await(child.exited),
        ({ code, signal }) =>
          Effect.flatMap(
            Deferred.isDone(child.ready),
            (wasReady): Effect.Effect<never, RolledBack | ChildExited> =>
              wasReady
                ? new RolledBack({ pid: child.pid, code, signal, probation })
                : new ChildExited({ pid: child.pid, code, signal })
          )
      )),
      Effect.raceFirst(Effect.zipRight(Deferred.await(stopSignal), new Stopped({ childPid: child.pid })))
    )

  // Without probation a child that dies after `ready` takes the listeners with it, since
  // this generation has let them go; say so loudly while this one is still draining.
  const watchSuccessor = (child: Spawn.Child) =>
    Deferred.await(child.exited).pipe(
      Effect.flatMap(({ code, signal }) =>
        Effect.logError(
          `the new generation (pid ${child.pid}) ${
            signal !== null ? `was killed by ${signal}` : `exited with code ${code}`
          } after it was ready, while this generation drains; its listeners are gone with it. ` +
            "Set `probation` to keep them until the new generation has proven itself"
        )
      ),
      annotate,
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
    return options.unregisteredListeners === "warn" ? Effect.logWarning(error.message) : Effect.fail(error)
  })

  const attempt = Effect.acquireUseRelease(
    Effect.gen(function*() {
      yield* checkStrays
      const handover = yield* registry.handover()
      const child = yield* Spawn.spawn(command(), {
        version: Protocol.VERSION,
        generation: generation + 1,
        parentPid: process.pid,
        cwd,
        fds: handover.descriptors
      }, handover).pipe(Effect.tapError(() => Effect.sync(() => registry.settle(false))))
      yield* Ref.update(state, (s): State => s._tag === "Upgrading" ? { _tag: "Upgrading", childPid: child.pid } : s)
      yield* Effect.logInfo("started the next generation").pipe(
        Effect.annotateLogs({ childPid: child.pid, descriptors: handover.descriptors.length })
      )
      return child
    }),
    (child) => Effect.zipRight(child.sendSockets, awaitChild(child)),
    (child, exit) =>
      Effect.zipRight(
        Exit.isSuccess(exit) ? Effect.zipRight(child.detach, watchSuccessor(child)) : child.kill,
        Effect.sync(() => registry.settle(Exit.isSuccess(exit)))
      )
  ).pipe(
    Effect.onExit((exit) =>
      Exit.isSuccess(exit)
        ? Effect.sync(() => {
          upgraded = true
        }).pipe(
          Effect.zipRight(Ref.set(state, { _tag: "Upgraded", childPid: exit.value.pid })),
          Effect.zipRight(Deferred.succeed(exitReason, "upgraded")),
          Effect.zipRight(Effect.logInfo("upgraded").pipe(Effect.annotateLogs({ childPid: exit.value.pid })))
        )
        : Ref.update(state, (s): State => s._tag === "Upgrading" ? { _tag: "Ready" } : s).pipe(
          Effect.zipRight(reclaimPidFile)
        )
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

  const upgrade = Effect.gen(function*() {
    yield* begin
    // The attempt lives in the layer's scope, so closing the layer kills a pending child;
    // interrupting the caller interrupts the attempt too.
    const fiber = yield* Effect.forkIn(attempt, scope)
    pending = fiber
    return yield* Fiber.join(fiber).pipe(Effect.onInterrupt(() => Fiber.interrupt(fiber)))
  }).pipe(
    record,
    Effect.tapError((error) => Effect.logWarning("upgrade failed", error.message)),
    annotate,
    Effect.withLogSpan("upgrade"),
    Effect.withSpan("Upgrader.upgrade")
  )

  const stop = Effect.gen(function*() {
    const previous = yield* Ref.getAndUpdate(state, (s): State => s._tag === "Upgraded" ? s : { _tag: "Stopped" })
    if (previous._tag === "Upgraded" || previous._tag === "Stopped") return
    yield* Deferred.succeed(stopSignal, undefined)
    // By the time `exit` completes, a pending new generation is killed and reaped,
    // and its `upgrade` caller has its Stopped error.
    if (pending !== undefined) yield* Fiber.await(pending)
    yield* Deferred.succeed(exitReason, "stopped")
    yield* Effect.logInfo("stopped").pipe(annotate)
  })

  yield* Effect.addFinalizer(() => stop)
  if (link !== undefined) {
    yield* Deferred.await(link.parentGone).pipe(
      Effect.zipRight(Effect.logInfo(`the previous generation (pid ${link.parentPid}) has exited`)),
      annotate,
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
    waitForParent: link === undefined ? Effect.void : Deferred.await(link.parentGone),
    registry
  } satisfies Lifecycle
})
