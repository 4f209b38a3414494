/**
 * The typed IPC channel, in-process: the decoders per message, the receiver's
 * dispatch (unknown and malformed messages ignored and logged once, stray
 * sockets closed, messages handled in order by its fiber, a throwing handler
 * logged), requests matched to answers by sequence number, and
 * errors round-tripping through a `Failed` answer.
 */
import { assert, describe } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Equal from "effect/Equal"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import * as Net from "node:net"
import * as Channel from "../src/internal/channel.js"
import * as Errors from "../src/internal/errors.js"
import * as Fx from "../src/internal/fx.js"
import * as Protocol from "../src/internal/protocol.js"
import {
  AlreadyUpgraded,
  ChildExited,
  HealthCheckFailed,
  NotReady,
  NotSupported,
  ParentNotExited,
  RolledBack,
  SpawnError,
  StateError,
  Stopped,
  TooManyDescriptors,
  UnregisteredListener,
  type UpgradeError,
  UpgradeInProgress,
  UpgradeTimeout
} from "../src/UpgradeError.js"
import { it } from "./helpers/it.js"
import { replaceLogger } from "./helpers/logging.js"

const manifest: Protocol.Manifest = {
  version: Protocol.VERSION,
  generation: 2,
  parentPid: 100,
  cwd: "/srv",
  fds: [{ kind: "tcp", key: "tcp:*:80", address: "0.0.0.0", port: 80, family: "IPv4" }],
  supervisor: true
}

// JSON, as Node's IPC channel carries it.
const wire = (message: unknown): unknown => JSON.parse(JSON.stringify(message))

describe("Channel decoders", () => {
  it("decode every message either way as it was sent", () => {
    const toChild: ReadonlyArray<Channel.ToChild> = [
      { tableflip: "descriptor", key: "tcp:*:80" },
      { tableflip: "state", state: "{\"a\":1}" },
      { tableflip: "go", manifest },
      { tableflip: "upgrade-result", ack: 3, result: { _tag: "Upgraded", pid: 42 } },
      { tableflip: "prepare-result", result: { _tag: "Failed", error: { _tag: "NotReady", pid: 7 } } },
      { tableflip: "exit", result: { _tag: "Upgraded", pid: 42 } },
      { tableflip: "stop" },
      { tableflip: "predecessor-gone" }
    ]
    for (const message of toChild) {
      assert.deepStrictEqual(Channel.decode(Channel.fromParent, wire(message)), { _tag: "Message", message })
    }
    const toParent: ReadonlyArray<Channel.ToParent> = [
      {
        tableflip: "descriptor",
        key: "unix:/run/a.sock",
        descriptor: { kind: "unix", key: "unix:/run/a.sock", path: "/run/a.sock" }
      },
      { tableflip: "ready" },
      { tableflip: "unready", reason: "database down" },
      { tableflip: "parked" },
      { tableflip: "upgrade", seq: 1 },
      { tableflip: "prepare" }
    ]
    for (const message of toParent) {
      assert.deepStrictEqual(Channel.decode(Channel.fromChild, wire(message)), { _tag: "Message", message })
    }
  })

  it("ignore unknown properties, as the manifest check does", () => {
    assert.deepStrictEqual(Channel.decode(Channel.fromParent, { tableflip: "stop", from: "a newer build" }), {
      _tag: "Message",
      message: { tableflip: "stop" }
    })
  })

  it("tell foreign, unknown and malformed messages apart, naming what is wrong", () => {
    for (const foreign of [null, 1, "ready", [], { cmd: "app's own" }, { tableflip: 1 }]) {
      assert.deepStrictEqual(Channel.decode(Channel.fromParent, foreign), { _tag: "Foreign" })
    }
    assert.deepStrictEqual(Channel.decode(Channel.fromParent, { tableflip: "rewind" }), {
      _tag: "Unknown",
      tag: "rewind"
    })
    // A message of the other direction is unknown here.
    assert.deepStrictEqual(Channel.decode(Channel.fromParent, { tableflip: "ready" }), {
      _tag: "Unknown",
      tag: "ready"
    })
    assert.deepStrictEqual(Channel.decode(Channel.fromChild, { tableflip: "toString" }), {
      _tag: "Unknown",
      tag: "toString"
    })
    const cases: ReadonlyArray<[Channel.Decoders<any>, unknown, string]> = [
      [Channel.fromParent, { tableflip: "exit" }, "at result: expected an object, got nothing"],
      [Channel.fromParent, { tableflip: "state", state: 1 }, "at state: expected a string, got 1"],
      [
        Channel.fromParent,
        { tableflip: "upgrade-result", ack: 1, result: { _tag: "Upgraded", pid: 0 } },
        "at result.pid: expected an integer from 1 to 2147483647, got 0"
      ],
      [
        Channel.fromParent,
        { tableflip: "prepare-result", ack: "1", result: { _tag: "Upgraded", pid: 9 } },
        "at ack: expected an integer"
      ],
      [
        Channel.fromParent,
        { tableflip: "upgrade-result", result: { _tag: "Failed", error: { pid: 1 } } },
        "at result.error._tag: expected a string, got nothing"
      ],
      [
        Channel.fromParent,
        { tableflip: "go", manifest: { ...manifest, version: 2 } },
        "at version: expected an integer from 1 to 1, got 2"
      ],
      [Channel.fromChild, { tableflip: "unready" }, "at reason: expected a string, got nothing"],
      [Channel.fromChild, { tableflip: "upgrade", seq: 1.5 }, "at seq: expected an integer"],
      [
        Channel.fromChild,
        { tableflip: "descriptor", key: "file:log", descriptor: { kind: "file", key: "file:log", fd: 4 } },
        "at descriptor.kind: expected one of \"tcp\", \"unix\", \"udp\", \"conn\", got \"file\""
      ]
    ]
    for (const [decoders, raw, reason] of cases) {
      const decoded = Channel.decode(decoders, raw)
      assert.strictEqual(decoded._tag, "Malformed", JSON.stringify(raw))
      if (decoded._tag === "Malformed") assert.include(decoded.reason, reason)
    }
  })
})

/** Runs `body` with a logger that keeps every line it writes. */
const withLines = <A, E, R>(body: (lines: Array<string>) => Effect.Effect<A, E, R>) => {
  const lines: Array<string> = []
  return body(lines).pipe(
    Effect.provide(replaceLogger((_level, message) => lines.push(String(message))))
  )
}

describe("Channel receiver", () => {
  it.scoped("dispatches each message to its handler, the socket with the descriptor", () =>
    withLines((lines) =>
      Effect.gen(function*() {
        const seen: Array<[string, unknown]> = []
        const { receive, settled } = yield* Channel.receiver(Channel.fromChild, "the next generation (pid 5)", () => ({
          descriptor: (message, handle) => seen.push([message.key, handle]),
          ready: () => seen.push(["ready", undefined]),
          unready: ({ reason }) => seen.push(["unready", reason]),
          parked: () => seen.push(["parked", undefined]),
          upgrade: ({ seq }) => seen.push(["upgrade", seq]),
          prepare: ({ seq }) => seen.push(["prepare", seq])
        }))
        const socket = new Net.Socket()
        const descriptor = { kind: "tcp", key: "tcp:*:80", address: "0.0.0.0", port: 80, family: "IPv4" }
        receive({ tableflip: "descriptor", key: "tcp:*:80", descriptor }, socket)
        receive({ tableflip: "unready", reason: "no db" }, undefined)
        receive({ tableflip: "upgrade", seq: 4 }, undefined)
        receive({ tableflip: "prepare" }, undefined)
        receive({ tableflip: "ready" }, undefined)
        receive({ cmd: "the app's own" }, undefined)
        yield* settled
        assert.deepStrictEqual(seen, [
          ["tcp:*:80", socket],
          ["unready", "no db"],
          ["upgrade", 4],
          ["prepare", undefined],
          ["ready", undefined]
        ])
        assert.isFalse(socket.destroyed)
        assert.deepStrictEqual(lines, [])
        socket.destroy()
      })
    ))

  it.scoped("ignores unknown and malformed messages, logging each tag once, and closes stray sockets", () =>
    withLines((lines) =>
      Effect.gen(function*() {
        let stops = 0
        const { receive, settled } = yield* Channel.receiver(
          Channel.fromParent,
          "the previous generation (pid 9)",
          () => ({
            descriptor: () => assert.fail("no descriptor should pass"),
            state: () => assert.fail("no state should pass"),
            go: () => assert.fail("no go should pass"),
            "upgrade-result": () => {},
            "prepare-result": () => {},
            exit: () => assert.fail("no exit should pass"),
            stop: () => stops++,
            "predecessor-gone": () => {}
          })
        )
        receive({ tableflip: "rewind" }, undefined)
        receive({ tableflip: "rewind", by: 2 }, undefined)
        receive({ tableflip: "exit" }, undefined)
        receive({ tableflip: "exit", result: {} }, undefined)
        receive({ tableflip: "descriptor", key: "tcp:*:80" }, undefined)
        const strays = [new Net.Socket(), new Net.Socket(), new Net.Socket()]
        receive({ tableflip: "stop" }, strays[0])
        receive({ tableflip: "descriptor" }, strays[1])
        receive({ tableflip: "state", state: "{}" }, strays[2])
        receive({ tableflip: "stop" }, undefined)
        yield* settled
        assert.strictEqual(stops, 1)
        assert.isTrue(strays.every((socket) => socket.destroyed))
        assert.deepStrictEqual(lines, [
          "pid " + process.pid + ": ignored a \"rewind\" message from the previous generation (pid 9), " +
          "which this build does not know; later ones are ignored without a word",
          "pid " + process.pid + ": ignored a malformed \"exit\" message from the previous generation (pid 9): " +
          "at result: expected an object, got nothing; later ones are ignored without a word",
          "pid " + process.pid + ": ignored a \"descriptor\" message from the previous generation (pid 9) " +
          "without a socket; later ones are ignored without a word",
          "pid " + process.pid + ": closed a socket the previous generation (pid 9) sent with a \"stop\" message, " +
          "which carries none",
          "pid " + process.pid + ": closed a socket the previous generation (pid 9) sent with a malformed " +
          "\"descriptor\" message (at key: expected a string, got nothing)",
          "pid " + process.pid + ": closed a socket the previous generation (pid 9) sent with a \"state\" message, " +
          "which carries none"
        ])
      })
    ))

  it.scoped("hands a malformed message of a tag with a hook to the hook, raw", () =>
    withLines((lines) =>
      Effect.gen(function*() {
        const raws: Array<unknown> = []
        const { receive, settled } = yield* Channel.receiver(
          Channel.fromParent,
          "the previous generation (pid 9)",
          () => ({
            descriptor: () => {},
            state: () => {},
            go: () => assert.fail("a malformed go is not a go"),
            "upgrade-result": () => {},
            "prepare-result": () => {},
            exit: () => {},
            stop: () => {},
            "predecessor-gone": () => {}
          }),
          { go: (raw) => raws.push(raw.manifest) }
        )
        receive({ tableflip: "go" }, undefined)
        receive({ tableflip: "go", manifest: { version: 2 } }, undefined)
        yield* settled
        assert.deepStrictEqual(raws, [undefined, { version: 2 }])
        assert.deepStrictEqual(lines, [])
      })
    ))
  it.scoped("handles messages in arrival order, one at a time, and only once it has returned", () =>
    Effect.gen(function*() {
      const seen: Array<string> = []
      let running = false
      const { receive, settled } = yield* Channel.receiver(Channel.fromChild, "the next generation (pid 5)", () => ({
        descriptor: ({ key }) => seen.push(key),
        ready: () => seen.push("ready"),
        unready: ({ reason }) => {
          assert.isFalse(running)
          running = true
          seen.push(`unready ${reason}`)
          running = false
        },
        parked: () => seen.push("parked"),
        upgrade: ({ seq }) => seen.push(`upgrade ${seq}`),
        prepare: ({ seq }) => seen.push(`prepare ${seq}`)
      }))
      const expected: Array<string> = []
      for (let i = 0; i < 50; i++) {
        receive({ tableflip: "unready", reason: `r${i}` }, undefined)
        receive({ tableflip: "upgrade", seq: i }, undefined)
        expected.push(`unready r${i}`, `upgrade ${i}`)
      }
      // Handled by the receiver's fiber, not in Node's callback.
      assert.deepStrictEqual(seen, [])
      receive({ tableflip: "parked" }, undefined)
      yield* settled
      assert.deepStrictEqual(seen, [...expected, "parked"])
    }))

  it.scoped("runs an event after the messages received before it", () =>
    Effect.gen(function*() {
      const seen: Array<string> = []
      const { after, receive, settled } = yield* Channel.receiver(
        Channel.fromChild,
        "the next generation (pid 5)",
        () => ({
          descriptor: () => {},
          ready: () => seen.push("ready"),
          unready: () => {},
          parked: () => seen.push("parked"),
          upgrade: () => {},
          prepare: () => {}
        })
      )
      receive({ tableflip: "ready" }, undefined)
      after(() => seen.push("exit"))
      receive({ tableflip: "parked" }, undefined)
      yield* settled
      assert.deepStrictEqual(seen, ["ready", "exit", "parked"])
    }))

  it.effect("logs a handler that throws, and handles the next message all the same", () =>
    withLines((lines) =>
      Effect.gen(function*() {
        const seen: Array<string> = []
        const { receive, settled } = yield* Channel.receiver(Channel.fromChild, "the next generation (pid 5)", () => ({
          descriptor: () => {},
          ready: () => seen.push("ready"),
          unready: ({ reason }) => {
            throw new Error(`cannot take ${reason}`)
          },
          parked: () => seen.push("parked"),
          upgrade: () => {},
          prepare: () => {}
        }))
        receive({ tableflip: "unready", reason: "no db" }, undefined)
        receive({ tableflip: "ready" }, undefined)
        receive({ tableflip: "unready", reason: "no disk" }, undefined)
        receive({ tableflip: "parked" }, undefined)
        yield* settled
        assert.deepStrictEqual(seen, ["ready", "parked"])
        assert.deepStrictEqual(lines, [
          "pid " + process.pid + ": handling a \"unready\" message from the next generation (pid 5) failed: " +
          "cannot take no db; the next messages are handled all the same",
          "pid " + process.pid + ": handling a \"unready\" message from the next generation (pid 5) failed: " +
          "cannot take no disk; the next messages are handled all the same"
        ])
      }).pipe(Effect.scoped)
    ))

  it.effect("stops when its scope closes: what is left is not handled, its sockets are closed, events still run", () =>
    Effect.gen(function*() {
      const seen: Array<string> = []
      const scope = yield* Scope.make()
      const { after, receive } = yield* Channel.receiver(Channel.fromChild, "the next generation (pid 5)", () => ({
        descriptor: () => seen.push("descriptor"),
        ready: () => seen.push("ready"),
        unready: () => {},
        parked: () => {},
        upgrade: () => {},
        prepare: () => {}
        // Built where interruption is off, as `spawn` builds it: its fiber must still stop.
      })).pipe(Fx.inScope(scope), Effect.uninterruptible)
      const queued = new Net.Socket()
      const late = new Net.Socket()
      const descriptor = { kind: "tcp", key: "tcp:*:80", address: "0.0.0.0", port: 80, family: "IPv4" }
      // Queued in this same synchronous run: the receiver's fiber has not had its turn yet.
      receive({ tableflip: "descriptor", key: "tcp:*:80", descriptor }, queued)
      after(() => seen.push("queued event"))
      yield* Scope.close(scope, Exit.void)
      receive({ tableflip: "descriptor", key: "tcp:*:80", descriptor }, late)
      receive({ tableflip: "ready" }, undefined)
      after(() => seen.push("late event"))
      yield* Fx.yieldNow
      assert.deepStrictEqual(seen, ["queued event", "late event"])
      assert.isTrue(queued.destroyed)
      assert.isTrue(late.destroyed)
    }))
})

describe("Channel requests", () => {
  const make = () => {
    const sent: Array<Channel.UpgradeRequest | Channel.PrepareRequest> = []
    const requests = Channel.requests((message) => Effect.sync(() => void sent.push(message)))
    return { sent, requests }
  }

  it.effect("numbers each request and matches answers by ack, in any order", () =>
    Effect.gen(function*() {
      const { requests, sent } = make()
      const upgrade = yield* Fx.fork(requests.request("upgrade"))
      const prepare = yield* Fx.fork(requests.request("prepare"))
      const second = yield* Fx.fork(requests.request("upgrade"))
      yield* Fx.yieldNow
      assert.deepStrictEqual(sent, [
        { tableflip: "upgrade", seq: 1 },
        { tableflip: "prepare", seq: 2 },
        { tableflip: "upgrade", seq: 3 }
      ])
      // An ack of another kind, or of no request, completes nothing.
      assert.isFalse(requests.answer({ tableflip: "prepare-result", ack: 1, result: { _tag: "Upgraded", pid: 1 } }))
      assert.isFalse(requests.answer({ tableflip: "upgrade-result", ack: 99, result: { _tag: "Upgraded", pid: 1 } }))
      assert.isTrue(requests.answer({ tableflip: "upgrade-result", ack: 3, result: { _tag: "Upgraded", pid: 33 } }))
      assert.isTrue(requests.answer({ tableflip: "prepare-result", ack: 2, result: { _tag: "Upgraded", pid: 22 } }))
      assert.isTrue(requests.answer({ tableflip: "upgrade-result", ack: 1, result: { _tag: "Upgraded", pid: 11 } }))
      // Each answer once.
      assert.isFalse(requests.answer({ tableflip: "upgrade-result", ack: 1, result: { _tag: "Upgraded", pid: 11 } }))
      assert.deepStrictEqual(yield* Fiber.join(upgrade), { _tag: "Upgraded", pid: 11 })
      assert.deepStrictEqual(yield* Fiber.join(prepare), { _tag: "Upgraded", pid: 22 })
      assert.deepStrictEqual(yield* Fiber.join(second), { _tag: "Upgraded", pid: 33 })
    }))

  it.effect("gives an answer without ack (an older runner) to the oldest request of its kind", () =>
    Effect.gen(function*() {
      const { requests } = make()
      const prepare = yield* Fx.fork(requests.request("prepare"))
      const first = yield* Fx.fork(requests.request("upgrade"))
      const second = yield* Fx.fork(requests.request("upgrade"))
      yield* Fx.yieldNow
      assert.isTrue(requests.answer({ tableflip: "upgrade-result", result: { _tag: "Upgraded", pid: 1 } }))
      assert.isTrue(requests.answer({ tableflip: "upgrade-result", result: { _tag: "Upgraded", pid: 2 } }))
      assert.isFalse(requests.answer({ tableflip: "upgrade-result", result: { _tag: "Upgraded", pid: 3 } }))
      assert.deepStrictEqual(yield* Fiber.join(first), { _tag: "Upgraded", pid: 1 })
      assert.deepStrictEqual(yield* Fiber.join(second), { _tag: "Upgraded", pid: 2 })
      requests.abandon()
      assert.isUndefined(yield* Fiber.join(prepare))
    }))

  it.effect("forgets a request whose waiter is interrupted", () =>
    Effect.gen(function*() {
      const { requests } = make()
      const waiting = yield* Fx.fork(requests.request("upgrade"))
      yield* Fx.yieldNow
      yield* Fiber.interrupt(waiting)
      assert.isFalse(requests.answer({ tableflip: "upgrade-result", ack: 1, result: { _tag: "Upgraded", pid: 1 } }))
    }))

  it("answers with the request's seq, or without ack when it had none", () => {
    const upgraded = { _tag: "Upgraded", pid: 5 } as const
    assert.deepStrictEqual(Channel.answerTo({ tableflip: "upgrade", seq: 7 }, upgraded), {
      tableflip: "upgrade-result",
      ack: 7,
      result: upgraded
    })
    assert.deepStrictEqual(Channel.answerTo({ tableflip: "prepare" }, upgraded), {
      tableflip: "prepare-result",
      result: upgraded
    })
  })

  it.effect("send fails with ChannelBroken on a closed channel", () =>
    Effect.gen(function*() {
      const closed = { connected: false, send: () => assert.fail("nothing is sent on a closed channel") }
      const error = yield* Effect.flip(Channel.send(closed as unknown as NodeJS.Process, { tableflip: "ready" }))
      assert.strictEqual(error._tag, "ChannelBroken")
      assert.isUndefined(error.cause)
    }))
})

describe("Errors across the channel", () => {
  it("revive every upgrade error with its fields, durations from ms", () => {
    const errors: ReadonlyArray<UpgradeError> = [
      new NotSupported({ platform: "win32", reason: "no fd passing" }),
      new NotReady({ pid: 1 }),
      new ParentNotExited({ parentPid: 2 }),
      new UpgradeInProgress({ childPid: undefined }),
      new UpgradeInProgress({ childPid: 3 }),
      new AlreadyUpgraded({ childPid: 4 }),
      new Stopped({ childPid: 5 }),
      new ChildExited({ pid: 6, code: 1, signal: null }),
      new ChildExited({ pid: 6, code: null, signal: "SIGKILL" }),
      new RolledBack({ pid: 7, code: 2, signal: null, probation: Duration.seconds(3) }),
      new UpgradeTimeout({ pid: 8, timeout: Duration.millis(1500) }),
      new UpgradeTimeout({ pid: 8, timeout: Duration.minutes(1), phase: "prepare" }),
      new TooManyDescriptors({ count: 20, max: 13 }),
      new UnregisteredListener({ addresses: ["tcp 127.0.0.1:80"] }),
      new HealthCheckFailed({ pid: 9, reason: "no db" }),
      new StateError({ key: "cache", reason: "TooLarge", detail: "2 MB" }),
      new SpawnError({ command: "node app.js", cause: new Error("ENOENT") })
    ]
    for (const error of errors) {
      const message = wire({
        tableflip: "upgrade-result",
        ack: 1,
        result: { _tag: "Failed", error: Errors.serialize(error) }
      })
      const decoded = Channel.decode(Channel.fromParent, message)
      assert.strictEqual(decoded._tag, "Message")
      if (decoded._tag !== "Message" || decoded.message.tableflip !== "upgrade-result") return
      const result = decoded.message.result
      assert.strictEqual(result._tag, "Failed")
      if (result._tag !== "Failed") return
      const revived = Errors.revive(result.error)
      assert.strictEqual(revived._tag, error._tag)
      assert.strictEqual(revived.message, error.message)
      assert.strictEqual(revived.constructor, error.constructor)
      for (const [key, value] of Object.entries(error)) {
        const back = (revived as unknown as Record<string, unknown>)[key]
        if (Duration.isDuration(value)) assert.isTrue(Equal.equals(back, value), `${error._tag}.${key}`)
        else assert.deepStrictEqual(back, value, `${error._tag}.${key}`)
      }
    }
  })

  it("send a SpawnError's cause as the text its message shows", () => {
    const revived = Errors.revive(
      wire(Errors.serialize(new SpawnError({ command: "a", cause: new Error("EACCES") }))) as any
    )
    assert.strictEqual((revived as SpawnError).cause, "EACCES")
    assert.strictEqual(revived.message, "cannot start the next generation (a): EACCES")
  })

  it("revive a tag this build does not know as a SpawnError", () => {
    const revived = Errors.revive({ _tag: "FromTheFuture", detail: "x" })
    assert.instanceOf(revived, SpawnError)
    assert.deepStrictEqual({ command: (revived as SpawnError).command, cause: (revived as SpawnError).cause }, {
      command: "the runner",
      cause: "FromTheFuture"
    })
  })
})
