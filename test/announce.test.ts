/**
 * The systemd announcements: the fields and STATUS texts each role sends.
 * Pure, in-process: the notify function only records what it is given.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Announce from "../src/internal/announce.js"
import type * as Notify from "../src/internal/notify.js"

const recorder = () => {
  const sent: Array<ReadonlyArray<readonly [string, string]>> = []
  const notify: Notify.Notify = (...fields) => Effect.sync(() => void sent.push(fields))
  return { sent, notify }
}

describe("Announce", () => {
  it.effect("a generation hands the main pid on at an upgrade", () =>
    Effect.gen(function*() {
      const { notify, sent } = recorder()
      const announce = Announce.make("generation", notify)
      yield* announce.ready(3)
      yield* announce.upgraded(4242, 4)
      yield* announce.failed(3, "boom")
      yield* announce.stopping()
      assert.deepStrictEqual(sent, [
        [["READY", "1"], ["MAINPID", String(process.pid)], ["STATUS", "generation 3 serving"]],
        [["MAINPID", "4242"], ["READY", "1"], ["STATUS", "generation 4 serving"]],
        [["READY", "1"], ["STATUS", "generation 3 serving; upgrade failed: boom"]],
        [["STOPPING", "1"], ["STATUS", "stopping"]]
      ])
    }))

  it.effect("the runner stays the main pid", () =>
    Effect.gen(function*() {
      const { notify, sent } = recorder()
      const announce = Announce.make("runner", notify)
      yield* announce.upgraded(4242, 2)
      yield* announce.failed(1)
      yield* announce.stopping("SIGTERM")
      assert.deepStrictEqual(sent, [
        [["READY", "1"], ["STATUS", "generation 2 serving (pid 4242)"]],
        [["READY", "1"], ["STATUS", "generation 1 serving; the upgrade failed"]],
        [["STOPPING", "1"], ["STATUS", "stopping on SIGTERM"]]
      ])
    }))

  it.effect("reloading carries the monotonic clock", () =>
    Effect.gen(function*() {
      const { notify, sent } = recorder()
      yield* Announce.make("runner", notify).reloading(2)
      const [reloading, clock, status] = sent[0]!
      assert.deepStrictEqual(reloading, ["RELOADING", "1"])
      assert.strictEqual(clock![0], "MONOTONIC_USEC")
      assert.match(clock![1], /^\d+$/)
      assert.deepStrictEqual(status, ["STATUS", "starting generation 2"])
    }))
})
