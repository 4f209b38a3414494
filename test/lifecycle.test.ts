/**
 * The lifecycle in-process, through its test seam: the spawner is a fake
 * whose "child" is a `Spawn.Child` made of Deferreds this file completes
 * (ready, parked, unready, exited), recording what the lifecycle sends it
 * and whether it was killed. Timeouts and probation run on `TestClock`, so
 * every behaviour takes milliseconds. The real-process tests
 * (upgrade, faults, prepare, attempt) keep one run per behaviour against
 * the OS; this file is where the state machine's paths are exercised fast.
 */
import { assert, describe } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Fs from "node:fs"
import * as Fds from "../src/Fds.js"
import * as Fx from "../src/internal/fx.js"
import * as Instance from "../src/internal/instance.js"
import * as Lifecycle from "../src/internal/lifecycle.js"
import type * as Successor from "../src/internal/lifecycle/successor.js"
import { SpawnError } from "../src/UpgradeError.js"
import type { Options } from "../src/Upgrader.js"
import { type FakeChild, isDone, makeFakeChild } from "./helpers/fakeChild.js"
import { it } from "./helpers/it.js"
import { adjustTestClock } from "./helpers/services.js"

const TIMEOUT = Duration.seconds(30)
const PROBATION = Duration.seconds(20)
// Coarse enough to be quick, fine enough that "after the timeout" means within one step of it.
const STEP = Duration.seconds(5)

type Fake = FakeChild

/** A spawner whose children are fakes, handed to the test in the order they were started. */
const fakeSpawner = Effect.gen(function*() {
  const started = yield* Queue.unbounded<Fake>()
  let spawned = 0
  let failures = 0
  const spawner: Successor.Spawner = (command, manifest, handover) =>
    Effect.gen(function*() {
      if (failures > 0) {
        failures -= 1
        return yield* new SpawnError({ command: command.execPath, cause: "the fake spawner was told to fail" })
      }
      spawned += 1
      // Not pids of this machine's processes: nothing here may signal them.
      const fake = yield* makeFakeChild(5_000_000 + spawned, manifest, handover)
      yield* Queue.offer(started, fake)
      return fake
    })
  return {
    spawner,
    next: Queue.take(started),
    spawned: () => spawned,
    failNext: () => {
      failures += 1
    }
  }
})

/**
 * A first generation (the test process has no handover in its environment)
 * whose successors are fakes. Claims the process's one Upgrader for the scope.
 */
const setup = (options: Options = {}) =>
  Effect.gen(function*() {
    const fakes = yield* fakeSpawner
    yield* Instance.claim("test/lifecycle.test.ts")
    const lifecycle = yield* Lifecycle.make(
      // The test runner's worker may hold sockets of its own; the stray check is tested in strays.test.ts.
      { upgradeTimeout: TIMEOUT, unregisteredListeners: "warn", ...options },
      { spawner: fakes.spawner }
    )
    return { lifecycle, fakes }
  })

type Setup = Fx.EffectSuccess<ReturnType<typeof setup>>

/** `setup`, and the lifecycle says ready: where every upgrade test starts. */
const ready = (options: Options = {}) => Effect.tap(setup(options), ({ lifecycle }) => lifecycle.ready)

/** Asks for an upgrade (forked, as a signal handler would) and takes the child it started. */
const upgrading = ({ fakes, lifecycle }: Setup) =>
  Effect.gen(function*() {
    const upgrade = yield* Fx.fork(lifecycle.upgrade)
    const child = yield* fakes.next
    return { upgrade, child }
  })

/** The child says ready, and the upgrade succeeds with its pid. */
const succeeds = (upgrade: Fiber.Fiber<{ readonly pid: number }, unknown>, child: Fake) =>
  Effect.gen(function*() {
    yield* Deferred.succeed(child.ready, undefined)
    assert.deepStrictEqual(yield* Fiber.join(upgrade), { pid: child.pid })
  })

/** Prepares a child and lets it park; the parked child. */
const prepared = ({ fakes, lifecycle }: Setup) =>
  Effect.gen(function*() {
    const prepare = yield* Fx.fork(lifecycle.prepare)
    const child = yield* fakes.next
    yield* Deferred.succeed(child.parked, undefined)
    assert.deepStrictEqual(yield* Fiber.join(prepare), { pid: child.pid })
    return child
  })

/** Moves the test clock a step at a time until `fiber` is done; the virtual time that passed. */
const advanceUntilDone = <A, E>(fiber: Fiber.Fiber<A, E>, limit: Duration.Duration) =>
  Effect.gen(function*() {
    const start = yield* Clock.currentTimeMillis
    while (Option.isNone(yield* Fx.pollFiber(fiber))) {
      if ((yield* Clock.currentTimeMillis) - start > Duration.toMillis(limit)) {
        return yield* Fx.dieMessage(`not done within ${Duration.format(limit)} of test-clock time`)
      }
      yield* adjustTestClock(STEP)
      yield* Fx.yieldNow
    }
    return Duration.millis((yield* Clock.currentTimeMillis) - start)
  })

describe("the lifecycle, in-process: upgrades and their refusals", () => {
  it.scoped("ready, then an upgrade hands over to the new generation once it is ready", () =>
    Effect.gen(function*() {
      const t = yield* ready()
      const { child, upgrade } = yield* upgrading(t)
      assert.strictEqual(child.manifest.generation, 2)
      assert.strictEqual(child.manifest.parentPid, process.pid)
      assert.strictEqual(child.manifest.upgradeTimeoutMillis, Duration.toMillis(TIMEOUT))
      assert.isUndefined(child.manifest.prepared)
      yield* Deferred.await(child.handed)
      yield* succeeds(upgrade, child)
      assert.strictEqual(yield* t.lifecycle.exit, "upgraded")
      assert.deepStrictEqual(child.record.sent, ["sockets"])
      assert.isTrue(child.record.detached, "the new generation outlives this one")
      assert.isFalse(child.record.killed)
      // Upgraded for good: a second upgrade is refused.
      const again = yield* Effect.flip(t.lifecycle.upgrade)
      assert.strictEqual(again._tag, "AlreadyUpgraded")
    }))

  it.scoped("a second upgrade while one is in flight fails with UpgradeInProgress, naming the child", () =>
    Effect.gen(function*() {
      const t = yield* ready()
      const { child, upgrade } = yield* upgrading(t)
      yield* Deferred.await(child.handed)
      const error = yield* Effect.flip(t.lifecycle.upgrade)
      assert.strictEqual(error._tag, "UpgradeInProgress")
      assert.strictEqual(error._tag === "UpgradeInProgress" && error.childPid, child.pid)
      assert.strictEqual(t.fakes.spawned(), 1)
      yield* succeeds(upgrade, child)
    }))

  it.scoped("an upgrade before ready fails with NotReady and starts nothing", () =>
    Effect.gen(function*() {
      const { fakes, lifecycle } = yield* setup()
      const error = yield* Effect.flip(lifecycle.upgrade)
      assert.strictEqual(error._tag, "NotReady")
      assert.strictEqual((yield* Effect.flip(lifecycle.prepare))._tag, "NotReady")
      assert.strictEqual(fakes.spawned(), 0)
    }))
})

describe("the lifecycle, in-process: upgrades that fail", () => {
  it.scoped("a child that exits before ready fails the upgrade with ChildExited; the next upgrade works", () =>
    Effect.gen(function*() {
      const t = yield* ready()
      const first = yield* upgrading(t)
      yield* Deferred.succeed(first.child.exited, { code: 3, signal: null })
      const error = yield* Effect.flip(Fiber.join(first.upgrade))
      assert.strictEqual(error._tag, "ChildExited")
      assert.strictEqual(error._tag === "ChildExited" && error.code, 3)
      assert.isFalse(yield* isDone(t.lifecycle.exit), "this generation serves on")
      // Back to Ready.
      const { child, upgrade } = yield* upgrading(t)
      assert.notStrictEqual(child.pid, first.child.pid)
      yield* succeeds(upgrade, child)
      assert.strictEqual(yield* t.lifecycle.exit, "upgraded")
    }))

  it.scoped("a spawn that fails fails the upgrade with SpawnError; the next upgrade works", () =>
    Effect.gen(function*() {
      const t = yield* ready()
      t.fakes.failNext()
      const error = yield* Effect.flip(t.lifecycle.upgrade)
      assert.strictEqual(error._tag, "SpawnError")
      const { child, upgrade } = yield* upgrading(t)
      yield* succeeds(upgrade, child)
    }))

  it.scoped("a child that never says ready is killed at the timeout, with UpgradeTimeout", () =>
    Effect.gen(function*() {
      const t = yield* ready()
      const { child, upgrade } = yield* upgrading(t)
      const waited = yield* advanceUntilDone(upgrade, Duration.sum(TIMEOUT, Duration.seconds(10)))
      const error = yield* Effect.flip(Fiber.join(upgrade))
      assert.strictEqual(error._tag, "UpgradeTimeout")
      assert.isTrue(Duration.toMillis(waited) >= Duration.toMillis(TIMEOUT), `gave up after ${Duration.format(waited)}`)
      assert.isTrue(child.record.killed)
      assert.isFalse(yield* isDone(t.lifecycle.exit))
    }))

  it.scoped("a child that reports unready fails the upgrade with HealthCheckFailed and is killed", () =>
    Effect.gen(function*() {
      const t = yield* ready()
      const { child, upgrade } = yield* upgrading(t)
      yield* Deferred.succeed(child.unready, "the database is unreachable")
      const error = yield* Effect.flip(Fiber.join(upgrade))
      assert.strictEqual(error._tag, "HealthCheckFailed")
      assert.strictEqual(error._tag === "HealthCheckFailed" && error.reason, "the database is unreachable")
      assert.isTrue(child.record.killed)
      assert.isFalse(yield* isDone(t.lifecycle.exit))
    }))
})

describe("the lifecycle, in-process: probation", () => {
  it.scoped("with probation, the upgrade succeeds once the child has stayed up through it", () =>
    Effect.gen(function*() {
      const t = yield* ready({ probation: PROBATION })
      const { child, upgrade } = yield* upgrading(t)
      yield* Deferred.succeed(child.ready, undefined)
      const waited = yield* advanceUntilDone(upgrade, Duration.sum(PROBATION, Duration.seconds(10)))
      assert.isTrue(
        Duration.toMillis(waited) >= Duration.toMillis(PROBATION),
        `succeeded after ${Duration.format(waited)}`
      )
      assert.deepStrictEqual(yield* Fiber.join(upgrade), { pid: child.pid })
      assert.strictEqual(yield* t.lifecycle.exit, "upgraded")
    }))

  it.scoped("a child that exits during probation rolls the upgrade back; this generation serves on", () =>
    Effect.gen(function*() {
      const t = yield* ready({ probation: PROBATION })
      const first = yield* upgrading(t)
      yield* Deferred.succeed(first.child.ready, undefined)
      yield* Deferred.succeed(first.child.exited, { code: 1, signal: null })
      const error = yield* Effect.flip(Fiber.join(first.upgrade))
      assert.strictEqual(error._tag, "RolledBack")
      assert.isFalse(first.child.record.detached)
      assert.isFalse(yield* isDone(t.lifecycle.exit))

      const { child, upgrade } = yield* upgrading(t)
      yield* Deferred.succeed(child.ready, undefined)
      yield* advanceUntilDone(upgrade, Duration.sum(PROBATION, Duration.seconds(10)))
      assert.deepStrictEqual(yield* Fiber.join(upgrade), { pid: child.pid })
    }))
})

describe("the lifecycle, in-process: prepared generations", () => {
  it.scoped("prepare parks a child; the next upgrade sends it go instead of starting another", () =>
    Effect.gen(function*() {
      const t = yield* ready()
      const prepare = yield* Fx.fork(t.lifecycle.prepare)
      const child = yield* t.fakes.next
      assert.isTrue(child.manifest.prepared)
      assert.deepStrictEqual(child.handover.sockets, [], "a parked child gets no socket before go")
      yield* Deferred.succeed(child.parked, undefined)
      assert.deepStrictEqual(yield* Fiber.join(prepare), { pid: child.pid })
      assert.isFalse(yield* isDone(t.lifecycle.exit), "preparing leaves this generation Ready")

      const upgrade = yield* Fx.fork(t.lifecycle.upgrade)
      yield* Deferred.await(child.handed)
      assert.strictEqual(t.fakes.spawned(), 1, "no second child")
      assert.strictEqual(child.record.sent.length, 1)
      const [sent] = child.record.sent
      assert.isTrue(typeof sent === "object" && sent.go.generation === 2 && sent.go.prepared === undefined)
      yield* succeeds(upgrade, child)
      assert.strictEqual(yield* t.lifecycle.exit, "upgraded")
    }))

  it.scoped("a parked child that exits is not used: the next upgrade starts one afresh", () =>
    Effect.gen(function*() {
      const t = yield* ready()
      const parked = yield* prepared(t)
      yield* Deferred.succeed(parked.exited, { code: null, signal: "SIGTERM" })
      const { child: fresh, upgrade } = yield* upgrading(t)
      assert.notStrictEqual(fresh.pid, parked.pid)
      assert.isUndefined(fresh.manifest.prepared)
      yield* succeeds(upgrade, fresh)
      assert.deepStrictEqual(parked.record.sent, [], "the dead parked child was sent nothing")
      assert.deepStrictEqual(fresh.record.sent, ["sockets"])
    }))

  it.scoped("a file registered after the prepare makes the upgrade start afresh; the parked child is killed", () =>
    Effect.gen(function*() {
      const t = yield* ready()
      const parked = yield* prepared(t)
      // A child inherits files only when it starts: the parked one cannot have this one.
      const fd = Fs.openSync("/dev/null", "r")
      yield* Effect.addFinalizer(() => Effect.sync(() => Fs.closeSync(fd)))
      yield* Fds.fromRegistry(t.lifecycle.registry).addFile("late", fd)
      const { child: fresh, upgrade } = yield* upgrading(t)
      assert.isTrue(parked.record.killed, "the parked child was killed")
      assert.deepStrictEqual(parked.record.sent, [])
      assert.isTrue(fresh.manifest.fds.some((d) => d.kind === "file" && d.key.endsWith("late")))
      yield* succeeds(upgrade, fresh)
    }))
})

describe("the lifecycle, in-process: stopping", () => {
  it.scoped("stop during an upgrade kills the child, fails the upgrade with Stopped, and exits \"stopped\"", () =>
    Effect.gen(function*() {
      const t = yield* ready()
      const { child, upgrade } = yield* upgrading(t)
      yield* Deferred.await(child.handed)
      yield* t.lifecycle.stop
      // `stop` returns once the pending upgrade has ended.
      assert.isTrue(child.record.killed)
      const error = yield* Effect.flip(Fiber.join(upgrade))
      assert.strictEqual(error._tag, "Stopped")
      assert.strictEqual(error._tag === "Stopped" && error.childPid, child.pid)
      assert.strictEqual(yield* t.lifecycle.exit, "stopped")
      assert.strictEqual((yield* Effect.flip(t.lifecycle.upgrade))._tag, "Stopped")
    }))

  it.scoped("stop kills a parked child", () =>
    Effect.gen(function*() {
      const t = yield* ready()
      const parked = yield* prepared(t)
      yield* t.lifecycle.stop
      assert.isTrue(parked.record.killed)
      assert.strictEqual(yield* t.lifecycle.exit, "stopped")
    }))

  it.effect("closing the lifecycle's scope during an upgrade kills the child and ends the upgrade", () =>
    Effect.gen(function*() {
      const { child, upgrade } = yield* Effect.scoped(Effect.gen(function*() {
        const { fakes, lifecycle } = yield* ready()
        // Forked outside the lifecycle's scope, as a caller would be.
        const upgrade = yield* Fx.forkDetach(lifecycle.upgrade)
        const child = yield* fakes.next
        yield* Deferred.await(child.handed)
        return { child, upgrade }
      }))
      assert.isTrue(child.record.killed)
      // Stopped, or interrupted with the attempt, depending on which finalizer reaches it first.
      assert.isTrue(Exit.isFailure(yield* Fiber.await(upgrade)))
    }))
})
