/**
 * The runner's state logic in-process, through its seam: the fleet's `spawn`
 * is a fake whose "child" is a `Spawn.Child` made of Deferreds this file
 * completes (ready, parked, exited), recording what the runner sends it and
 * whether it was killed; the fake "hands up" listeners and sends requests
 * through the runner's own `FromChild` handlers, and its listener handles
 * are objects that record their close. Timeouts run on `TestClock`. The
 * real-process runner tests (runner.test.ts, operator.test.ts) keep one run
 * per behaviour against the OS; this file exercises the fleet's paths fast.
 */
import { assert, describe } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import type * as Announce from "../src/internal/announce.js"
import * as Fx from "../src/internal/fx.js"
import type * as Protocol from "../src/internal/protocol.js"
import type { Handover } from "../src/internal/registry.js"
import * as Fleet from "../src/internal/runner/fleet.js"
import * as Steps from "../src/internal/runner/steps.js"
import type * as Spawn from "../src/internal/spawn.js"
import { type FakeChild, isDone, makeFakeChild } from "./helpers/fakeChild.js"
import { it } from "./helpers/it.js"
import { adjustTestClock } from "./helpers/services.js"

const TIMEOUT = Duration.seconds(30)

/** A listener handle as the runner sees one: it only ever closes it. */
interface FakeHandle {
  readonly name: string
  closed: boolean
  readonly close: () => void
}

const handle = (name: string): FakeHandle => {
  const self: FakeHandle = {
    name,
    closed: false,
    close: () => {
      self.closed = true
    }
  }
  return self
}

const tcp = (port: number): Protocol.SocketDescriptor => ({
  kind: "tcp",
  key: `tcp:127.0.0.1:${port}`,
  address: "127.0.0.1",
  port,
  family: "IPv4"
})

/** A fake generation, and the runner's handlers for what it sends up. */
interface Fake extends FakeChild {
  readonly up: ReturnType<Spawn.FromChild>
}

const makeFake = (pid: number, manifest: Protocol.Manifest, handover: Handover, fromChild: Spawn.FromChild) =>
  Effect.map(makeFakeChild(pid, manifest, handover), (child): Fake => {
    // The runner's handlers are made from the child itself, so they are added after it.
    const fake = child as FakeChild & { up: Fake["up"] }
    fake.up = fromChild(child)
    return fake
  })

/** Nothing goes to systemd; what would is recorded. */
const announcer = (said: Array<string>): Announce.Announcer => ({
  ready: (generation) => Effect.sync(() => said.push(`ready ${generation}`)),
  reloading: (next) => Effect.sync(() => said.push(`reloading ${next}`)),
  upgraded: (_pid, generation) => Effect.sync(() => said.push(`upgraded ${generation}`)),
  failed: (generation) => Effect.sync(() => said.push(`failed ${generation}`)),
  stopping: (signal) => Effect.sync(() => said.push(`stopping ${signal}`))
})

/** A fleet whose generations are fakes, handed to the test in the order they were started. */
const setup = (probation: Duration.Duration = Duration.zero) =>
  Effect.gen(function*() {
    const started = yield* Queue.unbounded<Fake>()
    let spawned = 0
    const spawner: Fleet.Spawner = (_command, manifest, handover, fromChild) =>
      Effect.gen(function*() {
        spawned += 1
        // Above PID_MAX_LIMIT (2^22): no process can have these pids, so a signal the runner sends one fails.
        const fake = yield* makeFake(5_000_000 + spawned, manifest, handover, fromChild!)
        yield* Queue.offer(started, fake)
        return fake
      })
    const said: Array<string> = []
    const fleet = yield* Fleet.make(
      {
        command: { execPath: "fake-app", args: [], cwd: process.cwd(), env: {} },
        upgradeTimeout: TIMEOUT,
        probation
      },
      spawner,
      announcer(said)
    )
    return { fleet, next: Queue.take(started), spawned: () => spawned, said }
  })

/** Generation 1 started, its listener handed up, ready and serving. */
const serving = Effect.gen(function*() {
  const ctx = yield* setup()
  const starting = yield* Fx.fork(Steps.startFirst(ctx.fleet, "fake-app"))
  const first = yield* ctx.next
  const listener = handle("first's listener")
  first.up.descriptor({ tableflip: "descriptor", key: tcp(8080).key, descriptor: tcp(8080) }, listener)
  yield* Deferred.succeed(first.ready, undefined)
  assert.strictEqual(yield* Fiber.join(starting), undefined)
  return { ...ctx, first, listener }
})

/** Gives the fibers the runner started from its callbacks turns until `check` holds (bounded). */
const eventually = (check: () => boolean) =>
  Effect.gen(function*() {
    for (let turn = 0; turn < 1000 && !check(); turn++) yield* Fx.yieldNow
    assert.isTrue(check(), "not within 1000 turns of the scheduler")
  })

const exitTag = <A, E extends { readonly _tag: string }>(exit: Exit.Exit<A, E>): string =>
  Exit.match(exit, {
    onSuccess: () => "success",
    onFailure: (cause) =>
      Option.match(Fx.failureOption(cause), {
        onNone: () => "defect",
        onSome: (error) => error._tag
      })
  })

describe("the runner's fleet, in-process with a fake spawner", () => {
  it.scoped("generation 1 hands its listener up at ready; the runner holds it and serves", () =>
    Effect.gen(function*() {
      const { first, fleet, listener, said } = yield* serving
      assert.strictEqual(first.manifest.generation, 1)
      assert.strictEqual(first.manifest.supervisor, true)
      assert.deepStrictEqual(first.record.sent, ["sockets"])
      assert.strictEqual(fleet.current?.number, 1)
      assert.strictEqual(fleet.held.get(tcp(8080).key)?.handle, listener)
      assert.isFalse(listener.closed)
      assert.deepStrictEqual(said, ["ready 1"])
    }))

  it.scoped("an upgrade hands the held listener to generation 2, tells 1 to exit, and keeps the one handle", () =>
    Effect.gen(function*() {
      const { first, fleet, listener, next, said } = yield* serving
      const upgrading = yield* Fx.fork(Steps.recorded(fleet, "upgrade"))
      const second = yield* next
      assert.strictEqual(second.manifest.generation, 2)
      assert.strictEqual(second.manifest.predecessorPid, first.pid)
      assert.deepStrictEqual(second.manifest.fds, [tcp(8080)])
      assert.deepStrictEqual(second.handover.sockets, [{ key: tcp(8080).key, handle: listener }])
      // It hands the very same listener back up.
      second.up.descriptor({ tableflip: "descriptor", key: tcp(8080).key, descriptor: tcp(8080) }, listener)
      yield* Deferred.succeed(second.ready, undefined)
      assert.deepStrictEqual(yield* Fiber.join(upgrading), { pid: second.pid })
      assert.strictEqual(fleet.current?.child, second)
      assert.isFalse(listener.closed)
      assert.deepStrictEqual(first.record.posted, [{
        tableflip: "exit",
        result: { _tag: "Upgraded", pid: second.pid }
      }])
      // Generation 2 learns when 1 has gone.
      yield* Deferred.succeed(first.exited, { code: 0, signal: null })
      yield* eventually(() => second.record.posted.length > 0)
      assert.deepStrictEqual(second.record.posted, [{ tableflip: "predecessor-gone" }])
      assert.isFalse(yield* isDone(Deferred.await(fleet.finished)))
      assert.deepStrictEqual(said, ["ready 1", "reloading 2", "upgraded 2"])
    }))

  it.scoped("a generation that exits before ready fails the upgrade; its listeners close and 1 serves on", () =>
    Effect.gen(function*() {
      const { fleet, first, listener, next, said } = yield* serving
      const upgrading = yield* Fx.fork(Steps.recorded(fleet, "upgrade"))
      const second = yield* next
      const own = handle("second's listener")
      second.up.descriptor({ tableflip: "descriptor", key: tcp(9090).key, descriptor: tcp(9090) }, own)
      yield* Deferred.succeed(second.exited, { code: 1, signal: null })
      assert.strictEqual(exitTag(yield* Fiber.await(upgrading)), "ChildExited")
      assert.isTrue(second.record.killed)
      assert.isTrue(own.closed)
      assert.isFalse(listener.closed)
      assert.strictEqual(fleet.current?.child, first)
      assert.isFalse(fleet.upgrading)
      assert.deepStrictEqual(said, ["ready 1", "reloading 2", "failed 1"])
    }))

  it.scoped("a generation that never says ready is killed at the upgrade timeout", () =>
    Effect.gen(function*() {
      const { fleet, first, next } = yield* serving
      const upgrading = yield* Fx.fork(Steps.recorded(fleet, "upgrade"))
      const second = yield* next
      yield* adjustTestClock(TIMEOUT)
      assert.strictEqual(exitTag(yield* Fiber.await(upgrading)), "UpgradeTimeout")
      assert.isTrue(second.record.killed)
      assert.strictEqual(fleet.current?.child, first)
    }))

  it.scoped("prepare parks generation 2 without sockets; the next upgrade sends it go with the held listener", () =>
    Effect.gen(function*() {
      const { fleet, first, listener, next, spawned } = yield* serving
      const preparing = yield* Fx.fork(Steps.recorded(fleet, "prepare"))
      const second = yield* next
      assert.strictEqual(second.manifest.prepared, true)
      // Told what it will be handed, but handed nothing before `go`.
      assert.deepStrictEqual(second.manifest.fds, [tcp(8080)])
      assert.deepStrictEqual(second.handover.sockets, [])
      yield* Deferred.succeed(second.parked, undefined)
      assert.deepStrictEqual(yield* Fiber.join(preparing), { pid: second.pid })
      assert.strictEqual(fleet.parked?.child, second)
      assert.deepStrictEqual(second.record.sent, [])

      const upgrading = yield* Fx.fork(Steps.recorded(fleet, "upgrade"))
      yield* Deferred.await(second.handed)
      const [go] = second.record.sent
      assert.isTrue(typeof go === "object" && go.go.prepared === undefined && go.go.predecessorPid === first.pid)
      assert.deepStrictEqual(typeof go === "object" ? go.handover.sockets : [], [{
        key: tcp(8080).key,
        handle: listener
      }])
      yield* Deferred.succeed(second.ready, undefined)
      assert.deepStrictEqual(yield* Fiber.join(upgrading), { pid: second.pid })
      assert.strictEqual(spawned(), 2)
      assert.strictEqual(fleet.parked, undefined)
      assert.strictEqual(fleet.current?.child, second)
    }))

  it.scoped("a parked generation that exits is forgotten; the next upgrade starts one afresh", () =>
    Effect.gen(function*() {
      const { fleet, next, spawned } = yield* serving
      const preparing = yield* Fx.fork(Steps.recorded(fleet, "prepare"))
      const second = yield* next
      yield* Deferred.succeed(second.parked, undefined)
      yield* Fiber.join(preparing)
      yield* Deferred.succeed(second.exited, { code: 1, signal: null })
      yield* eventually(() => fleet.parked === undefined)
      const upgrading = yield* Fx.fork(Steps.recorded(fleet, "upgrade"))
      const third = yield* next
      assert.strictEqual(spawned(), 3)
      yield* Deferred.await(third.handed)
      assert.deepStrictEqual(third.record.sent, ["sockets"])
      yield* Deferred.succeed(third.ready, undefined)
      assert.deepStrictEqual(yield* Fiber.join(upgrading), { pid: third.pid })
    }))

  it.scoped("a generation's own upgrade request during an upgrade is answered UpgradeInProgress", () =>
    Effect.gen(function*() {
      const { first, fleet, next } = yield* serving
      const upgrading = yield* Fx.fork(Steps.recorded(fleet, "upgrade"))
      const second = yield* next
      first.up.upgrade({ tableflip: "upgrade", seq: 7 }, undefined)
      yield* eventually(() => first.record.posted.length > 0)
      const answer = first.record.posted[0]
      assert.isTrue(
        answer?.tableflip === "upgrade-result" && answer.ack === 7 && answer.result._tag === "Failed" &&
          answer.result.error._tag === "UpgradeInProgress",
        JSON.stringify(answer)
      )
      yield* Deferred.succeed(second.ready, undefined)
      yield* Fiber.join(upgrading)
    }))

  it.scoped("an upgrade before generation 1 is ready is refused NotReady", () =>
    Effect.gen(function*() {
      const { fleet, next } = yield* setup()
      yield* Fx.fork(Steps.startFirst(fleet, "fake-app"))
      yield* next
      assert.strictEqual(exitTag(yield* Effect.exit(Steps.recorded(fleet, "upgrade"))), "NotReady")
    }))

  it.scoped("the serving generation exiting on its own finishes the runner with a shell's exit code", () =>
    Effect.gen(function*() {
      const { first, fleet } = yield* serving
      yield* Deferred.succeed(first.exited, { code: null, signal: "SIGTERM" })
      assert.strictEqual(yield* Deferred.await(fleet.finished), 143)
    }))

  it.scoped("stop kills the parked generation, tells the others to stop, and refuses what comes after", () =>
    Effect.gen(function*() {
      const { first, fleet, next, said } = yield* serving
      const preparing = yield* Fx.fork(Steps.recorded(fleet, "prepare"))
      const second = yield* next
      yield* Deferred.succeed(second.parked, undefined)
      yield* Fiber.join(preparing)
      yield* Fleet.stop(fleet, "SIGTERM")
      assert.isTrue(second.record.killed)
      assert.strictEqual(fleet.parked, undefined)
      assert.deepStrictEqual(first.record.posted, [{ tableflip: "stop" }])
      assert.isTrue(yield* isDone(Deferred.await(fleet.stopped)))
      assert.strictEqual(exitTag(yield* Effect.exit(Steps.recorded(fleet, "upgrade"))), "Stopped")
      assert.deepStrictEqual(said.at(-1), "stopping SIGTERM")
    }))

  it.scoped("stopped before generation 1 is ready: it is killed and the runner leaves with its exit code", () =>
    Effect.gen(function*() {
      const { fleet, next } = yield* setup()
      const starting = yield* Fx.fork(Steps.startFirst(fleet, "fake-app"))
      const first = yield* next
      // The fake pid is no process: the SIGTERM the runner tries fails, and the kill that follows ends it.
      yield* Fleet.stop(fleet, "SIGINT")
      const code = yield* Fiber.join(starting)
      assert.isTrue(first.record.killed)
      assert.strictEqual(code, 128 + 9)
    }))
})
