/**
 * `effect-tableflip run` and `effect-tableflip upgrade` as an operator runs
 * them: real runner, real app generations, real signals.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Http from "node:http"
import * as Path from "node:path"
import type { Plan } from "./fixtures/generation.js"
import { cli } from "./helpers/cli.js"
import {
  askPid,
  atSpawnPreload,
  exists,
  freePort,
  generations,
  isAlive,
  Run,
  tempDir,
  within,
  writePlan
} from "./helpers/fixture.js"
import { get, load } from "./helpers/http.js"

const { start, track } = generations()

/** The runner on the platform example; resolves once generation 1 serves. */
const runExample = async (options: { readonly detached?: boolean } = {}) => {
  const port = await freePort()
  const pidFile = Path.join(tempDir(), "runner.pid")
  const run = track(
    new Run("src/bin.ts", [
      "run",
      "--pid-file",
      pidFile,
      "--",
      process.execPath,
      "--import",
      "tsx",
      "examples/http-platform.ts",
      "--port",
      String(port)
    ], options)
  )
  const serving = await run.waitForLine(/serving: generation 1 is pid (\d+)/)
  return { run, port, pidFile, first: Number(/pid (\d+)/.exec(serving)![1]) }
}

/** The runner on the generation fixture with `plan`. */
const runFixture = (
  plan: Plan,
  launcher?: ReadonlyArray<string>,
  options: { readonly env?: NodeJS.ProcessEnv; readonly runnerArgs?: ReadonlyArray<string> } = {}
) => {
  const planFile = Path.join(tempDir(), "plan.json")
  writePlan(planFile, plan)
  const args = [
    "run",
    ...(options.runnerArgs ?? []),
    "--",
    process.execPath,
    "--import",
    "tsx",
    "test/fixtures/generation.ts",
    "--plan",
    planFile
  ]
  const run = track(
    new Run("src/bin.ts", args, {
      ...(launcher === undefined ? {} : { launcher }),
      ...(options.env === undefined ? {} : { env: options.env })
    })
  )
  return Object.assign(run, { planFile })
}

describe("effect-tableflip run", () => {
  it("keeps one pid through 10 upgrades under load with no failed request", async () => {
    const { pidFile, port, run } = await runExample()
    const runner = run.process.pid!
    assert.strictEqual(Fs.readFileSync(pidFile, "utf8"), `${runner}\n`)
    const clients = load(port, { keepAlive: 4, close: 2 })
    const apps: Array<number> = []
    for (let i = 0; i < 10; i++) {
      if (i % 3 === 0) {
        // Through the upgrade command, which waits for the outcome...
        const { code, stdout } = await cli(["upgrade", "--pid-file", pidFile])
        assert.strictEqual(code, 0, stdout)
        const match = new RegExp(`^upgraded: pid ${runner} -> (\\d+)\\n$`).exec(stdout)
        assert.isNotNull(match, stdout)
        apps.push(Number(match![1]))
      } else {
        // ...or a plain SIGHUP, as systemd's ExecReload or a terminal would send.
        const from = run.output.length
        process.kill(runner, "SIGHUP")
        apps.push(Number(/upgraded to pid (\d+)/.exec(await run.waitForLine(/upgraded to pid \d+/, from))![1]))
      }
    }
    const { failures, pids, requests } = await clients.stop()
    assert.deepStrictEqual(failures, [])
    assert.isAbove(requests, 100)
    assert.isAtLeast(pids.size, 5, "the load reached many generations")
    assert.strictEqual(new Set(apps).size, 10)
    assert.isTrue(isAlive(runner))
    assert.strictEqual(Fs.readFileSync(pidFile, "utf8"), `${runner}\n`, "the pid never changed")
    assert.strictEqual((await get(port, new Http.Agent())).body, `hello from pid ${apps.at(-1)}\n`)
  }, 180_000)

  it("stops everything on Ctrl-C (SIGINT to the process group) and exits with the app's code", async () => {
    const { first, port, run } = await runExample({ detached: true })
    const runner = run.process.pid!
    process.kill(-runner, "SIGINT")
    assert.strictEqual(await run.exited(), 0)
    await run.ended()
    assert.isFalse(isAlive(first))
    assert.deepStrictEqual(run.processes(), [], "no process of the run is left")
    const after = await get(port, new Http.Agent()).then(() => "served", (e: NodeJS.ErrnoException) => e.code)
    assert.strictEqual(after, "ECONNREFUSED")
  })

  it("exits with the app's exit code when the app ends on its own", async () => {
    const run = runFixture({ listen: [{ host: "127.0.0.1", port: 0 }], crashAfterReady: 100 })
    const ready = await run.waitFor((e) => e.event === "ready")
    assert.strictEqual(ready.generation, 1)
    assert.strictEqual(await run.exited(), 7)
  })
})

describe("effect-tableflip run, failures", () => {
  it("ends an upgrade whose new generation fails its readiness check with HealthCheckFailed, and serves on", async () => {
    const listen = [{ host: "127.0.0.1", port: 0 }]
    const run = runFixture({ listen })
    const first = await run.waitFor((e) => e.event === "ready")
    writePlan(run.planFile, { listen: [{ host: "127.0.0.1", port: first.listeners[0].port }], healthCheck: "fail" })
    const from = run.output.length
    process.kill(run.process.pid!, "SIGHUP")
    const line = await run.waitForLine(/upgrade failed/, from)
    assert.include(line, "failed its readiness check: the database is unreachable")
    assert.strictEqual(await askPid({ host: "127.0.0.1", port: first.listeners[0].port }), first.pid)
  })
})

describe("effect-tableflip run, a new generation killed or stopped the instant it is spawned", () => {
  // Two listeners: Node holds the second back until the child acknowledges the first, which it never does.
  const listen = [{ host: "127.0.0.1", port: 0 }, { host: "127.0.0.1", port: 0 }]

  const serving = async (runnerArgs: ReadonlyArray<string> = []) => {
    const run = runFixture({ listen }, undefined, { env: atSpawnPreload(), runnerArgs })
    const first = await within(run.waitFor((e) => e.event === "ready"), 30_000, "generation 1 is ready")
    const targets = (first.listeners as Array<{ port: number }>).map(({ port }) => ({ host: "127.0.0.1", port }))
    return { run, first: first.pid as number, targets, runner: run.process.pid! }
  }

  it("SIGKILL: the upgrade fails at once with ChildExited, the app serves on, upgrades again, and SIGTERM stops all", async () => {
    const { first, run, runner, targets } = await serving()
    writePlan(run.planFile, { listen: targets, atSpawn: "SIGKILL" })
    let from = run.output.length
    process.kill(runner, "SIGHUP")
    // The runner's upgrade timeout is a minute: anything but an immediate failure is the wedge.
    const failed = await within(run.waitForLine(/upgrade failed/, from), 15_000, "the upgrade's outcome")
    const spawned = run.events.find((e) => e.event === "at-spawn")!
    assert.include(failed, `new generation pid ${spawned.pid} was killed by SIGKILL before it was ready`)
    assert.isFalse(exists(spawned.pid), "reaped, no zombie")
    for (const target of targets) assert.strictEqual(await askPid(target), first)

    writePlan(run.planFile, { listen: targets })
    from = run.output.length
    process.kill(runner, "SIGHUP")
    const upgraded = await within(run.waitForLine(/upgraded to pid \d+/, from), 60_000, "the next upgrade")
    const second = Number(/upgraded to pid (\d+)/.exec(upgraded)![1])
    await within(run.waitFor((e) => e.event === "parent-gone" && e.pid === second), 30_000, "generation 1 is gone")
    for (const target of targets) assert.strictEqual(await askPid(target), second)

    process.kill(runner, "SIGTERM")
    assert.strictEqual(await within(run.exited(), 30_000, "the runner exits on SIGTERM"), 0)
    await within(run.ended(), 30_000, "every generation ends")
    assert.deepStrictEqual(run.processes(), [], "no process of the run is left")
  })

  it("SIGSTOP: SIGTERM during the upgrade stops the runner; the stopped generation is killed and reaped", async () => {
    const { run, runner, targets } = await serving()
    writePlan(run.planFile, { listen: targets, atSpawn: "SIGSTOP" })
    process.kill(runner, "SIGHUP")
    const spawned = await within(run.waitFor((e) => e.event === "at-spawn"), 30_000, "the new generation starts")
    process.kill(runner, "SIGTERM")
    assert.strictEqual(await within(run.exited(), 30_000, "the runner exits on SIGTERM"), 0)
    await within(run.ended(), 30_000, "every generation ends")
    assert.isFalse(exists(spawned.pid), "killed and reaped, no zombie")
    assert.deepStrictEqual(run.processes(), [], "no process of the run is left")
  })
})

describe("effect-tableflip run as a container's PID 1", () => {
  it("reaps orphans re-parented to it", async () => {
    // A new pid namespace (and its /proc), as a container has: the runner is pid 1 inside.
    const run = runFixture({ listen: [{ host: "127.0.0.1", port: 0 }], orphan: true }, [
      "unshare",
      "--fork",
      "--pid",
      "--mount-proc"
    ])
    const orphaned = await run.waitFor((e) => e.event === "orphaned")
    assert.strictEqual(orphaned.parent, 1, "the orphan was handed to the runner")
    await run.waitFor((e) => e.event === "orphan-reaped" && e.orphan === orphaned.orphan)
    // unshare forwards no signal: stop the runner itself, by its pid outside the namespace.
    const unshare = run.process.pid!
    const runner = Number(Fs.readFileSync(`/proc/${unshare}/task/${unshare}/children`, "utf8").trim())
    process.kill(runner, "SIGTERM")
    assert.strictEqual(await run.exited(), 0)
  })
})

describe("effect-tableflip upgrade", () => {
  it("reports a successful upgrade with the new pid, and a crash before ready as a typed failure", async () => {
    const pidFile = Path.join(tempDir(), "app.pid")
    const { planFile, run } = start({ listen: [{ host: "127.0.0.1", port: 0 }], pidFile })
    const first = await run.waitFor((e) => e.event === "ready")
    const listen = [{ host: "127.0.0.1", port: first.listeners[0].port }]

    writePlan(planFile, { listen, pidFile })
    const good = await cli(["upgrade", "--pid-file", pidFile])
    const second = Number(Fs.readFileSync(pidFile, "utf8"))
    assert.strictEqual(good.code, 0)
    assert.strictEqual(good.stdout, `upgraded: pid ${first.pid} -> ${second}\n`)
    await run.waitFor((e) => e.event === "parent-gone" && e.pid === second)

    writePlan(planFile, { listen, pidFile, mode: "crash" })
    const bad = await cli(["upgrade", "--pid-file", pidFile])
    assert.strictEqual(bad.code, 1)
    assert.match(
      bad.stderr,
      /^upgrade failed: ChildExited: new generation pid \d+ exited with code 3 before it was ready/
    )
    assert.strictEqual(Fs.readFileSync(pidFile, "utf8"), `${second}\n`, "the old generation serves on")

    const missing = await cli(["upgrade", "--pid-file", Path.join(tempDir(), "none.pid")])
    assert.strictEqual(missing.code, 2)
    assert.include(missing.stderr, "ENOENT")
  })
})
