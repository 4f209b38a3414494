/**
 * The directory handover's pure rooms, in-process: the state machine (its
 * table in the module comment checked against `transition`, both ways) and
 * the codec on owner.sock. The real-process behaviour is test/directory.test.ts.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import type * as Net from "node:net"
import * as Codec from "../src/internal/directory/codec.js"
import * as State from "../src/internal/directory/state.js"
import * as Fx from "../src/internal/fx.js"

const newcomer: State.Newcomer = { pid: 101, socket: {} as Net.Socket }
const other: State.Newcomer = { pid: 102, socket: {} as Net.Socket }

/** One of each state, and each variant of `Stopped`. */
const states: ReadonlyArray<State.State> = [
  { _tag: "Waiting" },
  { _tag: "Claiming" },
  { _tag: "Serving" },
  { _tag: "HandingOver", newcomer },
  { _tag: "HandedOver", newcomer },
  { _tag: "Stopped", ready: false, newcomer: undefined },
  { _tag: "Stopped", ready: true, newcomer: undefined },
  { _tag: "Stopped", ready: true, newcomer }
]

/** Every event, with the newcomer in flight and with another one. */
const events: ReadonlyArray<State.Event> = [
  { _tag: "MarkReady" },
  { _tag: "Claimed" },
  { _tag: "Offered", newcomer },
  { _tag: "NewcomerReady", newcomer },
  { _tag: "NewcomerReady", newcomer: other },
  { _tag: "Gone", newcomer },
  { _tag: "Gone", newcomer: other },
  { _tag: "Stop" }
]

/** The rows `from event -> to` of the table in state.ts's module comment. */
const table = () => {
  const source = Fs.readFileSync(new URL("../src/internal/directory/state.ts", import.meta.url), "utf8")
  const rows = [...source.matchAll(/^ \* {3}(\w+) +(\w+) +-> (\w+)/gm)].map(([, from, event, to]) => ({
    from: from!,
    event: event!,
    to: to!
  }))
  return new Map(rows.map((row) => [`${row.from} ${row.event}`, row.to]))
}

describe("directory handover state", () => {
  it("moves exactly as the table in its module comment says, and refuses every pair not in it", () => {
    const rows = table()
    assert.isAtLeast(rows.size, 13)
    const taken = new Set<string>()
    for (const state of states) {
      for (const event of events) {
        const key = `${state._tag} ${event._tag}`
        const next = State.transition(state, event)
        if (Fx.isFailure(next)) {
          assert.include(Fx.failureOf(next).message, `no ${event._tag} while ${state._tag}`)
          continue
        }
        assert.strictEqual(rows.get(key), Fx.successOf(next)._tag, `${key}: not as the table says`)
        taken.add(key)
      }
    }
    assert.sameMembers([...taken], [...rows.keys()], "every row of the table is taken by some state")
  })

  it("carries its data: the newcomer handed to, whether the app said ready", () => {
    const handing = Fx.getOrThrow(State.transition({ _tag: "Serving" }, { _tag: "Offered", newcomer }))
    assert.deepStrictEqual(handing, { _tag: "HandingOver", newcomer })
    // A second newcomer is refused (the owner answers busy), and only the one handed to counts.
    assert.isTrue(Fx.isFailure(State.transition(handing, { _tag: "Offered", newcomer: other })))
    assert.isTrue(Fx.isFailure(State.transition(handing, { _tag: "Gone", newcomer: other })))
    const stopped = Fx.getOrThrow(State.transition(handing, { _tag: "Stop" }))
    assert.deepStrictEqual(stopped, { _tag: "Stopped", ready: true, newcomer })
    // Stopped mid-handover, the newcomer's ready still counts: nothing of its is unlinked.
    const handed = Fx.getOrThrow(State.transition(stopped, { _tag: "NewcomerReady", newcomer }))
    assert.isFalse(State.mayUnlink(handed, true, false))
  })

  it("lets a unix listener's path be unlinked only while it is ours", () => {
    const waiting: State.State = { _tag: "Waiting" }
    assert.isTrue(State.mayUnlink(waiting, true, true), "bound here")
    assert.isFalse(State.mayUnlink(waiting, false, true), "inherited, before ready")
    assert.isTrue(State.mayUnlink(waiting, false, false), "nobody handed it over")
    assert.isTrue(State.mayUnlink({ _tag: "Serving" }, false, true), "inherited, after ready")
    assert.isFalse(State.mayUnlink({ _tag: "Stopped", ready: false, newcomer: undefined }, false, true))
    assert.isFalse(State.mayUnlink({ _tag: "HandedOver", newcomer }, true, false), "handed over")
  })
})

describe("directory handover codec", () => {
  const offer: Codec.Offer = {
    ownerPid: 7,
    generation: 3,
    descriptors: [
      { kind: "tcp", key: "tcp:127.0.0.1:80", address: "127.0.0.1", port: 80, family: "IPv4" },
      { kind: "unix", key: "unix:/run/a.sock", path: "/run/a.sock" }
    ]
  }

  it("decodes the offer frame it encodes", () => {
    const frame = Codec.encodeOffer(offer)
    const newline = frame.indexOf(10)
    const header = Fx.getOrThrow(Codec.decodeHeader(frame.subarray(0, newline).toString("latin1")))
    assert.deepStrictEqual(header, { _tag: "Offer", count: 2, bytes: frame.length - newline - 1 })
    if (header._tag !== "Offer") return
    assert.deepStrictEqual(Fx.getOrThrow(Codec.decodeManifest(header, frame.subarray(newline + 1), 2)), offer)
    assert.deepStrictEqual(Codec.decodeHeader("busy"), Fx.succeed({ _tag: "Busy" }))
  })

  it("refuses what it was not promised, saying what", () => {
    const left = (either: Fx.Result<unknown, string>) => Fx.isFailure(either) ? Fx.failureOf(either) : "accepted"
    assert.include(left(Codec.decodeHeader("hello")), "unknown header")
    assert.include(left(Codec.decodeHeader("offer 1 9000")), "over the limit of 8192")
    const body = Buffer.from(JSON.stringify(offer))
    const header = { count: 2, bytes: body.length }
    assert.include(left(Codec.decodeManifest(header, body, 1)), "announced 2 sockets and sent 1")
    assert.include(left(Codec.decodeManifest({ count: 2, bytes: 3 }, body, 2)), "more than the 3 bytes")
    assert.include(left(Codec.decodeManifest(header, Buffer.from("{".padEnd(body.length)), 2)), "not JSON")
    const udp = Buffer.from(JSON.stringify({ ...offer, descriptors: [{ kind: "udp", key: "u" }] }))
    assert.include(left(Codec.decodeManifest({ count: 1, bytes: udp.length }, udp, 1)), "malformed")
    assert.include(left(Codec.decodeManifest({ count: 1, bytes: body.length }, body, 1)), "named 2 sockets")
    assert.strictEqual(Codec.decodeAnswer("rea"), "more")
    assert.strictEqual(Codec.decodeAnswer("ready\n"), "ready")
    assert.strictEqual(Codec.decodeAnswer("x".repeat(65)), "overlong")
  })
})
