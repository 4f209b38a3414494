/**
 * The next generation as a resource of its caller's scope, with real child
 * processes (a `node -e` that only waits: it never reads the manifest):
 * closing the scope kills and reaps a child not handed over, and completes
 * its `exited` even though the fiber that reports exits is gone by then; a
 * child handed over (`detach`) outlives the scope.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import * as Fx from "../src/internal/fx.js"
import * as Protocol from "../src/internal/protocol.js"
import * as Spawn from "../src/internal/spawn.js"
import { exists, isAlive } from "./helpers/fixture.js"

const command: Spawn.Command = {
  execPath: process.execPath,
  args: ["-e", "setInterval(() => {}, 1 << 30)"],
  cwd: process.cwd(),
  env: process.env
}

const manifest: Protocol.Manifest = {
  version: Protocol.VERSION,
  generation: 2,
  parentPid: process.pid,
  cwd: process.cwd(),
  fds: []
}

const nothing = { descriptors: [], sockets: [], fds: [] }

/** Until /proc has no entry for `pid` (reaped), checked every 20 ms for at most 20 s: the kernel sends no event. */
const gone = (pid: number) =>
  Effect.sync(() => exists(pid)).pipe(
    Effect.repeat({ schedule: Schedule.spaced("20 millis"), until: (there) => !there }),
    Fx.timeoutFail({ duration: "20 seconds", onTimeout: () => new Error(`pid ${pid} still exists`) })
  )

describe("spawn: the child as a scoped resource", () => {
  it.live("closing the caller's scope kills and reaps a child not handed over, and completes its exit", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const child = yield* Spawn.spawn(command, manifest, nothing).pipe(Fx.inScope(scope))
      assert.isTrue(isAlive(child.pid), "started")
      yield* Scope.close(scope, Exit.void)
      const exited = yield* Deferred.await(child.exited).pipe(Effect.timeout("20 seconds"))
      assert.deepStrictEqual(exited, { code: null, signal: "SIGKILL" })
      yield* gone(child.pid)
    }))

  it.live("a child handed over outlives the scope", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const child = yield* Spawn.spawn(command, manifest, nothing).pipe(Fx.inScope(scope))
      yield* child.detach
      yield* Scope.close(scope, Exit.void)
      assert.isTrue(isAlive(child.pid), "still running after the scope closed")
      assert.isFalse(yield* Deferred.isDone(child.exited))
      process.kill(child.pid, "SIGKILL")
      yield* gone(child.pid)
    }))
})
