/**
 * The lifecycle's state machine as data, in-process: the transition table,
 * the refusals `upgrade` and `prepare` fail with, which states may unlink a
 * socket path, and the module comment's diagram against the table.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Fx from "../src/internal/fx.js"
import type { Event, State } from "../src/internal/lifecycle/state.js"
import { machine, mayUnlink, refusal, transition, TRANSITIONS } from "../src/internal/lifecycle/state.js"

const STATES: ReadonlyArray<State> = [
  { _tag: "Starting" },
  { _tag: "Ready" },
  { _tag: "Upgrading", childPid: 42 },
  { _tag: "Upgraded", childPid: 42 },
  { _tag: "Stopped", wasReady: true }
]

const EVENTS: ReadonlyArray<Event> = [
  { _tag: "MarkReady" },
  { _tag: "Begin", pid: 1, parentPid: undefined },
  { _tag: "Spawned", childPid: 7 },
  { _tag: "Succeeded", childPid: 7 },
  { _tag: "Failed" },
  { _tag: "StepDown", childPid: 7 },
  { _tag: "Stop" }
]

describe("the lifecycle's state machine: transitions", () => {
  it("changes state exactly for the events the table lists, and refuses only Begin", () => {
    for (const state of STATES) {
      for (const event of EVENTS) {
        const next = transition(state, event)
        const listed = TRANSITIONS[state._tag].includes(event._tag)
        if (event._tag === "Begin") {
          assert.strictEqual(Fx.isSuccess(next), state._tag === "Ready", `${state._tag} + Begin`)
          continue
        }
        assert.isTrue(Fx.isSuccess(next), `${state._tag} + ${event._tag} is never refused`)
        const changed = JSON.stringify(Fx.getOrThrow(next)) !== JSON.stringify(state)
        // Upgrading + Spawned with the same pid would be a no-op change; the fixtures use different pids.
        assert.strictEqual(changed, listed, `${state._tag} + ${event._tag}`)
      }
    }
  })

  it("goes Starting, Ready, Upgrading, Upgrading{childPid}, Ready again on failure, then Upgraded", () => {
    const m = machine()
    const tags = () => m.get()._tag
    assert.isTrue(Fx.isFailure(m.apply({ _tag: "Begin", pid: 1, parentPid: undefined })), "not ready yet")
    assert.strictEqual(tags(), "Starting")
    m.apply({ _tag: "MarkReady" })
    m.apply({ _tag: "Begin", pid: 1, parentPid: undefined })
    m.apply({ _tag: "Spawned", childPid: 9 })
    assert.deepStrictEqual(m.get(), { _tag: "Upgrading", childPid: 9 })
    m.apply({ _tag: "Failed" })
    assert.strictEqual(tags(), "Ready")
    m.apply({ _tag: "Begin", pid: 1, parentPid: undefined })
    m.apply({ _tag: "Succeeded", childPid: 10 })
    assert.deepStrictEqual(m.get(), { _tag: "Upgraded", childPid: 10 })
    m.apply({ _tag: "Stop" })
    assert.deepStrictEqual(m.get(), { _tag: "Upgraded", childPid: 10 }, "an upgraded generation stays upgraded")
  })
})

describe("the lifecycle's state machine: what each state allows", () => {
  it("refuses an upgrade with the typed error each state calls for", () => {
    const begin = { pid: 5, parentPid: undefined }
    assert.strictEqual(refusal({ _tag: "Starting" }, begin)?._tag, "NotReady")
    assert.strictEqual(refusal({ _tag: "Upgrading", childPid: 3 }, begin)?._tag, "UpgradeInProgress")
    assert.strictEqual(refusal({ _tag: "Upgraded", childPid: 3 }, begin)?._tag, "AlreadyUpgraded")
    assert.strictEqual(refusal({ _tag: "Stopped", wasReady: true }, begin)?._tag, "Stopped")
    assert.isUndefined(refusal({ _tag: "Ready" }, begin))
    const refused = refusal({ _tag: "Ready" }, { pid: 5, parentPid: 4 })
    assert.strictEqual(refused?._tag, "ParentNotExited")
    assert.include(refused!.message, "4")
  })

  it("unlinks a socket path only when the path is this generation's", () => {
    // A generation that never served leaves the paths its parent serves alone.
    assert.isFalse(mayUnlink({ _tag: "Starting" }, false, false))
    assert.isTrue(mayUnlink({ _tag: "Starting" }, true, false))
    assert.isTrue(mayUnlink({ _tag: "Starting" }, false, true))
    assert.isFalse(mayUnlink({ _tag: "Stopped", wasReady: false }, false, false))
    assert.isTrue(mayUnlink({ _tag: "Stopped", wasReady: true }, false, false))
    assert.isTrue(mayUnlink({ _tag: "Ready" }, false, false))
    // Handed over: the path is the new generation's, whoever bound it.
    assert.isFalse(mayUnlink({ _tag: "Upgraded", childPid: 2 }, true, true))
    // A new generation that was ready as this one stopped: the same.
    const m = machine()
    m.apply({ _tag: "MarkReady" })
    m.apply({ _tag: "Begin", pid: 1, parentPid: undefined })
    m.apply({ _tag: "Stop" })
    m.apply({ _tag: "Succeeded", childPid: 8 })
    assert.isFalse(mayUnlink(m.get(), true, true))
  })

  it("draws every transition of the table in the module comment", () => {
    const source = Fs.readFileSync(Path.resolve(import.meta.dirname, "../src/internal/lifecycle/state.ts"), "utf8")
    const diagram = source.slice(0, source.indexOf("*/"))
    for (const [from, events] of Object.entries(TRANSITIONS)) {
      for (const event of events) {
        const drawn = diagram.split("\n").some((line) => line.includes(from) && line.includes(event))
        assert.isTrue(drawn, `${from} --${event}--> is not in the diagram`)
      }
    }
  })
})
