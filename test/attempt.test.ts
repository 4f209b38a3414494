/**
 * The whole upgrade attempt (spawn, socket and state sends, readiness) is
 * raced with the new generation's exit, the timeout and `stop`, shown in this
 * test process with the real layer and a new generation that is a shell
 * killing or stopping itself before it reads anything: Node holds back every
 * message after the first socket until the child acknowledges it, which such
 * a child never does. `faults.test.ts` and `runner.test.ts` show the same with
 * real generations.
 */
import { assert, describe } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs/promises"
import * as Net from "node:net"
import * as Path from "node:path"
import * as Fds from "../src/Fds.js"
import * as Fx from "../src/internal/fx.js"
import type { UpgradeError } from "../src/UpgradeError.js"
import * as Upgrader from "../src/Upgrader.js"
import { exists, tempDir } from "./helpers/fixture.js"
import { it } from "./helpers/it.js"
import { minimumLogLevel } from "./helpers/logging.js"

/** The real layer, whose next generation is `sh -c script`; quiet, since the failures are expected. */
const layer = (script: string, options: Upgrader.Options = {}) =>
  Upgrader.layer({
    command: { execPath: "/bin/sh", args: ["-c", script] },
    // Whatever else this test process listens on is not ours to hand over.
    unregisteredListeners: "warn",
    ...options
  }).pipe(Layer.provideMerge(minimumLogLevel("Error")))

/** Two listeners (or one and a state), then ready. */
const serve = (what: "two listeners" | "a listener and a state") =>
  Effect.gen(function*() {
    const upgrader = yield* Upgrader.Upgrader
    yield* Fds.listen({ host: "127.0.0.1", port: 0 }, Net.createServer())
    if (what === "two listeners") yield* Fds.listen({ host: "127.0.0.1", port: 0 }, Net.createServer())
    else yield* upgrader.offerState("counters", Effect.succeed({ requests: 1 }))
    yield* upgrader.ready
    return upgrader
  })

/** The upgrade's error, which must come within `deadline`. */
const failure = (upgrade: Effect.Effect<Upgrader.Upgraded, UpgradeError>, deadline: Fx.DurationInput) =>
  upgrade.pipe(
    Effect.flip,
    Fx.timeoutFail({
      duration: deadline,
      onTimeout: () =>
        new Error(`the upgrade had no outcome within ${Duration.format(Fx.decodeDuration(deadline))}: it is wedged`)
    })
  )

describe("the upgrade attempt, in process", () => {
  for (const what of ["two listeners", "a listener and a state"] as const) {
    it.scopedLive(`a new generation SIGKILLed at spawn, ${what}: ChildExited at once, every time`, () =>
      Effect.gen(function*() {
        const upgrader = yield* serve(what)
        // The timeout is a minute; each attempt must end long before it.
        for (let attempt = 0; attempt < 2; attempt++) {
          const error = yield* failure(upgrader.upgrade, "20 seconds")
          assert.strictEqual(error._tag, "ChildExited", error.message)
          if (error._tag !== "ChildExited") return
          assert.strictEqual(error.signal, "SIGKILL")
          assert.isFalse(exists(error.pid), "reaped, no zombie")
        }
      }).pipe(Effect.provide(layer("kill -KILL $$"))))
  }

  it.scopedLive("a new generation whose --require preload is gone (MODULE_NOT_FOUND): ChildExited with its code", () =>
    Effect.gen(function*() {
      const upgrader = yield* serve("two listeners")
      const error = yield* failure(upgrader.upgrade, "20 seconds")
      assert.strictEqual(error._tag, "ChildExited", error.message)
      if (error._tag !== "ChildExited") return
      assert.strictEqual(error.code, 1)
    }).pipe(Effect.provide(
      // Node's report of the missing module is expected: it stays out of the test's output.
      layer(`exec "${process.execPath}" --require "${Path.join(tempDir(), "deleted.cjs")}" -e 0 2>/dev/null`)
    )))

  it.scopedLive("a new generation SIGSTOPped at spawn: killed and reaped at the timeout, every time", () =>
    Effect.gen(function*() {
      const upgrader = yield* serve("two listeners")
      for (let attempt = 0; attempt < 2; attempt++) {
        const error = yield* failure(upgrader.upgrade, "20 seconds")
        assert.strictEqual(error._tag, "UpgradeTimeout", error.message)
        if (error._tag !== "UpgradeTimeout") return
        assert.isFalse(exists(error.pid), "killed and reaped, no zombie")
      }
    }).pipe(Effect.provide(layer("kill -STOP $$", { upgradeTimeout: "1 second" }))))

  it.scopedLive("stop during the attempt: Stopped, the stopped new generation killed and reaped, exit completes", () => {
    const fifo = Path.join(tempDir(), "spawned")
    ChildProcess.execFileSync("mkfifo", [fifo])
    return Effect.gen(function*() {
      const upgrader = yield* serve("two listeners")
      const pending = yield* Fx.fork(failure(upgrader.upgrade, "20 seconds"))
      // The new generation says its pid through the FIFO, then stops itself.
      const pid = Number(
        yield* Effect.promise(() => Fs.readFile(fifo, "utf8")).pipe(
          Fx.timeoutFail({ duration: "20 seconds", onTimeout: () => new Error("the new generation never started") })
        )
      )
      yield* upgrader.stop.pipe(Fx.timeoutFail({ duration: "20 seconds", onTimeout: () => new Error("stop hung") }))
      assert.strictEqual(yield* upgrader.exit, "stopped")
      const error = yield* Fiber.join(pending)
      assert.strictEqual(error._tag, "Stopped", error.message)
      assert.isFalse(exists(pid), "killed and reaped, no zombie")
    }).pipe(Effect.provide(layer(`echo $$ > ${fifo}; kill -STOP $$`)))
  })
})
