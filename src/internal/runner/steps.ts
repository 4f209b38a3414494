/**
 * The runner's steps on its `Fleet`: start a generation (the first, raced
 * with its readiness; the next, prepared or not), prepare, upgrade, answer a
 * generation's own request, and react to a generation's exit.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { UpgradeInProgress } from "../../UpgradeError.js"
import * as Channel from "../channel.js"
import * as Errors from "../errors.js"
import * as Handles from "../handles.js"
import * as Log from "../log.js"
import * as Spawn from "../spawn.js"
import * as Fleet from "./fleet.js"

/** Starts generation 1 and waits for it; the exit code to leave with if it never said ready. @internal */
export const startFirst = (fleet: Fleet.Fleet, label: string) =>
  Effect.gen(function*() {
    const first = yield* start(fleet, 1, undefined)
    fleet.starting = first
    const ready = yield* Effect.exit(awaitFirst(fleet, first))
    fleet.starting = undefined
    if (Exit.isFailure(ready)) {
      yield* first.child.kill
      yield* fleet.stopping
        ? Log.info(`stopped before generation 1 said ready: ${label}`)
        : Log.error(`the app did not start: ${label}`)
      const exited = yield* Deferred.poll(first.child.exited)
      return exited._tag === "Some" ? Fleet.exitCode(yield* exited.value) : 1
    }
    yield* Fleet.serving(fleet, first)
    yield* fleet.announce.ready(1)
    yield* Log.info(`serving: generation 1 is pid ${first.child.pid}`)
    return undefined
  })

/** Starts generation `number`; a prepared one gets no socket until `go`. @internal */
export const start = (fleet: Fleet.Fleet, number: number, predecessorPid: number | undefined, prepared = false) =>
  Effect.gen(function*() {
    const offered = new Map<string, Fleet.Held>()
    const child = yield* fleet.spawn(
      fleet.settings.command,
      Fleet.manifestFor(fleet, number, predecessorPid, prepared ? { prepared: true } : {}),
      prepared ? { descriptors: [], sockets: [], fds: [] } : Fleet.handover(fleet),
      (child) => ({
        descriptor: ({ descriptor }, handle) => {
          // A second socket under one key would replace the first, which nobody would close.
          if (offered.has(descriptor.key)) Handles.closeHandle(handle)
          else offered.set(descriptor.key, { descriptor, handle })
        },
        upgrade: (request) => fleet.runFork(answer(fleet, child, request)),
        prepare: (request) => fleet.runFork(answer(fleet, child, request))
      })
    )
    fleet.live.add(child)
    const generation: Fleet.Generation = { number, child, offered }
    // Watched before anything can fail, so that every child leaves `live` when it exits.
    yield* Deferred.await(child.exited).pipe(
      Effect.tap(() => Effect.sync(() => fleet.live.delete(child))),
      Effect.flatMap((exited) => onExit(fleet, generation, exited)),
      Effect.forkScoped
    )
    // The sockets go out in `awaitReady`, raced with the child's exit, the timeout and stop.
    yield* Log.info(`${prepared ? "preparing" : "started"} generation ${number} (pid ${child.pid})`)
    return generation
  })

/**
 * The first generation has no predecessor to fall back on, so it is not
 * killed for being slow: past the upgrade timeout the runner says what is
 * likely wrong and goes on waiting. Stopped meanwhile, it gets SIGTERM (an
 * app that never said ready may not read the runner's messages), bounded by
 * the upgrade timeout.
 *
 * @internal
 */
export const awaitFirst = (fleet: Fleet.Fleet, generation: Fleet.Generation) => {
  const { upgradeTimeout } = fleet.settings
  return Spawn.awaitReady(generation.child, {
    timeout: Duration.infinity,
    probation: Duration.zero,
    stop: fleet.stopped
  })
    .pipe(
      Effect.raceFirst(
        Effect.sleep(upgradeTimeout).pipe(
          Effect.andThen(Log.warning(
            `generation 1 (pid ${generation.child.pid}) has not said ready within ${
              Duration.format(upgradeTimeout)
            }: is the app built on effect-tableflip's Upgrader, and does it call ready? ` +
              "The runner cannot upgrade it until it does"
          )),
          Effect.andThen(Effect.never)
        )
      ),
      Effect.tapErrorTag("Stopped", () =>
        Effect.try(() => process.kill(generation.child.pid, "SIGTERM")).pipe(
          Effect.andThen(Deferred.await(generation.child.exited)),
          Effect.timeout(upgradeTimeout),
          Effect.ignore
        ))
    )
}

const prepare = (fleet: Fleet.Fleet) =>
  fleet.lock.withPermits(1)(Effect.gen(function*() {
    const refused = Fleet.refusal(fleet)
    if (refused !== undefined) return yield* refused
    const old = fleet.current!
    if (fleet.parked !== undefined) {
      yield* Log.info(`replacing the prepared generation (pid ${fleet.parked.child.pid})`)
      yield* Fleet.discardParked(fleet)
    }
    const next = yield* start(fleet, old.number + 1, old.child.pid, true)
    const result = yield* Effect.exit(
      Spawn.awaitParked(next.child, { timeout: fleet.settings.upgradeTimeout, stop: fleet.stopped })
    )
    if (Exit.isFailure(result)) {
      yield* next.child.kill
      return yield* Effect.failCause(result.cause)
    }
    fleet.parked = next
    yield* Log.info(`generation ${next.number} (pid ${next.child.pid}) is prepared`)
    return { pid: next.child.pid }
  }))

/** The next generation (the parked one, if it lives) takes over from the serving one, or fails. */
const handOver = (fleet: Fleet.Fleet, old: Fleet.Generation) =>
  Effect.gen(function*() {
    yield* fleet.announce.reloading(old.number + 1)
    const prepared = yield* Fleet.takeParked(fleet)
    const next = prepared ?? (yield* start(fleet, old.number + 1, old.child.pid))
    if (prepared !== undefined) yield* Log.info(`handing over to the prepared generation (pid ${next.child.pid})`)
    const go = prepared === undefined
      ? undefined
      : { manifest: Fleet.manifestFor(fleet, next.number, old.child.pid), handover: Fleet.handover(fleet) }
    const { probation, upgradeTimeout } = fleet.settings
    const result = yield* Effect.exit(
      Spawn.awaitReady(next.child, { timeout: upgradeTimeout, probation, stop: fleet.stopped, go })
    )
    if (Exit.isFailure(result)) {
      yield* next.child.kill
      Fleet.release(next)
      yield* fleet.announce.failed(old.number)
      return yield* Effect.failCause(result.cause)
    }
    return next
  })

const upgrade = (fleet: Fleet.Fleet) =>
  fleet.lock.withPermits(1)(
    Effect.gen(function*() {
      const refused = Fleet.refusal(fleet)
      if (refused !== undefined) return yield* refused
      const old = fleet.current!
      fleet.upgrading = true
      const next = yield* handOver(fleet, old)
      Fleet.adopt(fleet, next)
      fleet.current = next
      yield* old.child.post({ tableflip: "exit", result: { _tag: "Upgraded", pid: next.child.pid } })
      yield* Deferred.await(old.child.exited).pipe(
        Effect.andThen(next.child.post({ tableflip: "predecessor-gone" })),
        Effect.forkScoped
      )
      yield* fleet.announce.upgraded(next.child.pid, next.number)
      yield* Log.info(`upgraded to pid ${next.child.pid} (generation ${next.number})`)
      return { pid: next.child.pid }
    }).pipe(Effect.ensuring(Effect.sync(() => {
      fleet.upgrading = false
    })))
  )

/** An upgrade or a prepare, its outcome recorded beside the PID file. @internal */
export const recorded = (fleet: Fleet.Fleet, kind: "upgrade" | "prepare") =>
  Effect.suspend(() => {
    const startedAt = Date.now()
    const { pidFile } = fleet.settings
    return (kind === "upgrade" ? upgrade(fleet) : prepare(fleet)).pipe(
      Effect.tapError((error) => Log.warning(`${kind} failed: ${error.message}`)),
      Effect.onExit((exit) =>
        pidFile === undefined ? Effect.void : Errors.recordOutcome(pidFile, startedAt, exit, false, kind === "prepare")
      )
    )
  })

// A generation asked for an upgrade or a prepare: answer it, typed.
const answer = (fleet: Fleet.Fleet, child: Spawn.Child, request: Channel.UpgradeRequest | Channel.PrepareRequest) =>
  (fleet.upgrading ? Effect.fail(new UpgradeInProgress({ childPid: undefined })) : recorded(fleet, request.tableflip))
    .pipe(
      Effect.matchEffect({
        onFailure: (error) => child.post(Channel.answerTo(request, { _tag: "Failed", error: Errors.serialize(error) })),
        onSuccess: ({ pid }) => child.post(Channel.answerTo(request, { _tag: "Upgraded", pid }))
      })
    )

// The current generation exiting on its own ends the runner with its code, unless an
// upgrade in flight replaces it first.
const onExit = (fleet: Fleet.Fleet, generation: Fleet.Generation, exited: Spawn.Exited) =>
  Effect.suspend(() => {
    // Outside the lock: a prepare or an upgrade may hold it meanwhile.
    if (fleet.parked !== generation) return Effect.void
    fleet.parked = undefined
    return Log.warning(
      `the prepared generation (pid ${generation.child.pid}) exited ${
        Fleet.ended(exited)
      } while parked; the next upgrade starts one afresh`
    )
  }).pipe(Effect.andThen(
    fleet.lock.withPermits(1)(Effect.suspend(() => {
      if (fleet.current !== generation) return Effect.void
      return Log.info(`generation ${generation.number} (pid ${generation.child.pid}) exited ${Fleet.ended(exited)}`)
        .pipe(
          Effect.andThen(Deferred.succeed(fleet.finished, Fleet.exitCode(exited)))
        )
    }))
  ))
