/**
 * The operator's day: `effect-tableflip upgrade` that never signals a
 * stranger and never waits out its timeout when the service upgraded,
 * systemd's spelling of durations, and a PID file that leaves with the
 * service.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Durations from "../src/internal/duration.js"
import * as Fx from "../src/internal/fx.js"
import * as PidFile from "../src/PidFile.js"
import * as Upgrader from "../src/Upgrader.js"
import { cli } from "./helpers/cli.js"
import { freePort, generations, isAlive, Run, tempDir, writePlan } from "./helpers/fixture.js"
import { withConfigEnv } from "./helpers/services.js"

const { start, track } = generations()
const loopback = { host: "127.0.0.1", port: 0 }

/** A process of ours that a SIGHUP would kill: it stands in for any unrelated process. */
const bystander = () => {
  const child = ChildProcess.spawn("sleep", ["120"], { stdio: "ignore" })
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once("exit", (_code, signal) => resolve(signal)))
  return { pid: child.pid!, child, exited }
}

/**
 * Runs `upgrade` against a PID file naming a bystander, prepared by `plant`, and
 * checks it refused with exit 4 and `message`, and that the bystander lives.
 */
const refusesStranger = async (plant: (pidFile: string, pid: number) => void, message: RegExp) => {
  const pidFile = Path.join(tempDir(), "app.pid")
  const stranger = bystander()
  Fs.writeFileSync(pidFile, `${stranger.pid}\n`)
  plant(pidFile, stranger.pid)
  const result = await cli(["upgrade", "--pid-file", pidFile, "--timeout", "5s"])
  assert.strictEqual(result.code, 4)
  assert.match(result.stderr, message)
  assert.isTrue(isAlive(stranger.pid), "the stranger was not signalled")
  stranger.child.kill("SIGKILL")
  assert.strictEqual(await stranger.exited, "SIGKILL")
}

describe("durations", () => {
  it("reads systemd's spelling and Effect's", () => {
    const cases: ReadonlyArray<readonly [string, number]> = [
      ["5s", 5000],
      ["1min", 60_000],
      ["500ms", 500],
      ["2h", 7_200_000],
      ["1min 30s", 90_000],
      ["1h30min", 5_400_000],
      ["30", 30_000],
      ["30 seconds", 30_000],
      ["500 millis", 500],
      ["1.5s", 1500]
    ]
    for (const [text, millis] of cases) {
      assert.strictEqual(Duration.toMillis(Durations.parse(text)!), millis, text)
    }
    for (const text of ["", "5x", "s", "five seconds", "-1s"]) assert.isUndefined(Durations.parse(text), text)
  })

  it.effect("a wrong one in the environment names the variable and the accepted forms", () =>
    Effect.gen(function*() {
      // A Config is an Effect on Effect 3 only; on both it can be yielded.
      const read = Effect.gen(function*() {
        return yield* Upgrader.config
      })
      const good = yield* read.pipe(
        withConfigEnv({ TABLEFLIP_PROBATION: "5s", TABLEFLIP_UPGRADE_TIMEOUT: "2min" })
      )
      assert.strictEqual(Duration.toMillis(Fx.decodeDuration(good.probation!)), 5000)
      assert.strictEqual(Duration.toMillis(Fx.decodeDuration(good.upgradeTimeout!)), 120_000)
      const bad = yield* Effect.flip(read.pipe(withConfigEnv({ TABLEFLIP_PROBATION: "5 secs please" })))
      assert.include(String(bad), "TABLEFLIP_PROBATION")
      assert.include(String(bad), "\"5s\", \"1min 30s\"")
    }))

  it("a service started with TABLEFLIP_PROBATION=5s and TABLEFLIP_UPGRADE_TIMEOUT=1s uses both", async () => {
    const { planFile, run } = start({ listen: [loopback], fromEnv: true }, {
      TABLEFLIP_PROBATION: "5s",
      TABLEFLIP_UPGRADE_TIMEOUT: "1s"
    })
    const first = await run.waitFor((e) => e.event === "ready")
    writePlan(planFile, { listen: [{ host: "127.0.0.1", port: first.listeners[0].port }], fromEnv: true, mode: "hang" })
    process.kill(first.pid, "SIGUSR2")
    const failed = await run.waitFor((e) => e.event === "upgrade-failed")
    assert.strictEqual(failed.tag, "UpgradeTimeout")
    assert.match(failed.message, /not ready within 1s/)
  })
})

describe("effect-tableflip upgrade, as operators run it", () => {
  it("two commands at once both exit 0 with the one upgrade that served them", async () => {
    const pidFile = Path.join(tempDir(), "app.pid")
    const { planFile, run } = start({ listen: [loopback], pidFile, drainFor: 2000 })
    const first = await run.waitFor((e) => e.event === "ready")
    writePlan(planFile, { listen: [{ host: "127.0.0.1", port: first.listeners[0].port }], pidFile, drainFor: 2000 })
    const one = cli(["upgrade", "--pid-file", pidFile, "--timeout", "30s"])
    // The second command signals while the first one's upgrade is in flight.
    await run.waitFor((e) => e.event === "started" && e.generation === 2)
    const two = cli(["upgrade", "--pid-file", pidFile, "--timeout", "30s"])
    const [a, b] = await Promise.all([one, two])
    assert.strictEqual(a.code, 0, a.stderr)
    assert.strictEqual(b.code, 0, b.stderr)
    const second = Number(/^upgraded: pid (\d+) -> (\d+)\n$/.exec(a.stdout)?.[2])
    assert.strictEqual(a.stdout, `upgraded: pid ${first.pid} -> ${second}\n`)
    // The second command signalled either the first generation, whose upgrade in flight served it, or
    // the second one, which upgraded again once its predecessor had drained.
    const [, from, to] = /^upgraded: pid (\d+) -> (\d+)\n$/.exec(b.stdout)!.map(Number)
    assert.include([first.pid, second], from)
    assert.strictEqual(Number(Fs.readFileSync(pidFile, "utf8")), to)
  })

  it("a command that signals while an upgrade is in flight gets that upgrade's outcome", async () => {
    const pidFile = Path.join(tempDir(), "app.pid")
    const { planFile, run } = start({ listen: [loopback], pidFile })
    const first = await run.waitFor((e) => e.event === "ready")
    // The new generation waits for SIGUSR1 before it says ready, so both commands signal the first.
    const listen = [{ host: "127.0.0.1", port: first.listeners[0].port }]
    writePlan(planFile, { listen, pidFile, mode: "ready-on-usr1" })
    const one = cli(["upgrade", "--pid-file", pidFile, "--timeout", "30s"])
    const child = await run.waitFor((e) => e.event === "started" && e.generation === 2)
    const two = cli(["upgrade", "--pid-file", pidFile, "--timeout", "30s"])
    await run.waitFor((e) => e.event === "sighup" && e.pid === first.pid)
    const from = run.events.findIndex((e) => e.event === "sighup") + 1
    await run.waitFor((e) => e.event === "sighup" && e.pid === first.pid, from)
    process.kill(child.pid, "SIGUSR1")
    const [a, b] = await Promise.all([one, two])
    assert.strictEqual(a.code, 0, a.stderr)
    assert.strictEqual(a.stdout, `upgraded: pid ${first.pid} -> ${child.pid}\n`)
    assert.strictEqual(b.code, 0, b.stderr)
    assert.strictEqual(b.stdout, `upgraded: pid ${first.pid} -> ${child.pid}\n`)
  })

  it("signals nothing through a PID file whose pid was reused by a later process, and exits 4", () =>
    refusesStranger((pidFile) => {
      // Written a minute before the process started: the writer died and its pid went to `sleep`.
      const before = new Date(Date.now() - 60_000)
      Fs.utimesSync(pidFile, before, before)
    }, /is stale: pid \d+ is another process that started after the file was written/))

  it("trusts a PID file by its start record, whatever the clock did since it was written", async () => {
    const pidFile = Path.join(tempDir(), "app.pid")
    const { planFile, run } = start({ listen: [loopback], pidFile })
    const first = await run.waitFor((e) => e.event === "ready")
    assert.match(Fs.readFileSync(PidFile.startPath(pidFile), "utf8"), new RegExp(`^${first.pid} \\d+\n$`))
    // As if the clock had been stepped forward after the write: the file looks older than the process.
    const before = new Date(Date.now() - 3_600_000)
    Fs.utimesSync(pidFile, before, before)
    writePlan(planFile, { listen: [{ host: "127.0.0.1", port: first.listeners[0].port }], pidFile })
    const result = await cli(["upgrade", "--pid-file", pidFile, "--timeout", "60s"])
    assert.strictEqual(result.code, 0, result.stderr)
    assert.match(result.stdout, new RegExp(`^upgraded: pid ${first.pid} -> \\d+`))
  })

  it("refuses a pid its start record shows was reused", () =>
    refusesStranger(
      (pidFile, pid) => Fs.writeFileSync(PidFile.startPath(pidFile), `${pid} 1\n`),
      /app\.start records another start time for it/
    ))

  it("signals nothing through a PID file another user could have planted, and exits 4", () =>
    refusesStranger(
      (pidFile) => Fs.chownSync(pidFile, 65534, 65534),
      /cannot be trusted: it belongs to uid 65534 but pid \d+ runs as uid 0/
    ))

  it("names a PID file whose process is gone as stale, and a missing one as unreadable", async () => {
    const dir = tempDir()
    const pidFile = Path.join(dir, "app.pid")
    const gone = bystander()
    gone.child.kill("SIGKILL")
    await gone.exited
    Fs.writeFileSync(pidFile, `${gone.pid}\n`)
    const stale = await cli(["upgrade", "--pid-file", pidFile])
    assert.strictEqual(stale.code, 4)
    assert.match(stale.stderr, /is stale: pid \d+ is not running \(the service stopped or crashed\)/)
    const missing = await cli(["upgrade", "--pid-file", Path.join(dir, "nothing.pid")])
    assert.strictEqual(missing.code, 2)
    assert.match(missing.stderr, /^cannot read PID file .*nothing\.pid: .*ENOENT/)
  })

  it("believes no outcome file another user planted: the real failure is reported", async () => {
    const pidFile = Path.join(tempDir(), "app.pid")
    const { planFile, run } = start({ listen: [loopback], pidFile })
    const first = await run.waitFor((e) => e.event === "ready")
    const planted = { pid: first.pid, startedAt: 9e15, endedAt: 9e15, outcome: "upgraded", child: 1 }
    Fs.writeFileSync(PidFile.outcomePath(pidFile), JSON.stringify(planted))
    Fs.chownSync(PidFile.outcomePath(pidFile), 65534, 65534)
    writePlan(planFile, { listen: [{ host: "127.0.0.1", port: first.listeners[0].port }], pidFile, mode: "crash" })
    const result = await cli(["upgrade", "--pid-file", pidFile, "--timeout", "90s"])
    assert.strictEqual(result.code, 1, result.stdout)
    assert.match(result.stderr, /^upgrade failed: ChildExited/)
  })
})

describe("the PID file", () => {
  it("leaves with a service that stops for good, and stays through an upgrade", async () => {
    const pidFile = Path.join(tempDir(), "app.pid")
    const { planFile, run } = start({ listen: [loopback], pidFile })
    const first = await run.waitFor((e) => e.event === "ready")
    writePlan(planFile, { listen: [{ host: "127.0.0.1", port: first.listeners[0].port }], pidFile })
    const upgraded = await cli(["upgrade", "--pid-file", pidFile])
    assert.strictEqual(upgraded.code, 0, upgraded.stderr)
    const second = await run.waitFor((e) => e.event === "ready" && e.pid !== first.pid)
    await run.waitFor((e) => e.event === "parent-gone" && e.pid === second.pid)
    assert.strictEqual(Fs.readFileSync(pidFile, "utf8"), `${second.pid}\n`, "the old generation left it alone")
    process.kill(second.pid, "SIGINT")
    await run.waitFor((e) => e.event === "exit" && e.pid === second.pid)
    await run.ended()
    assert.isFalse(Fs.existsSync(pidFile))
  })

  it.effect("is removed only while it names this process", () =>
    Effect.gen(function*() {
      const pidFile = Path.join(tempDir(), "app.pid")
      yield* PidFile.write(pidFile, process.pid + 1)
      assert.isFalse(yield* PidFile.removeIfOwn(pidFile))
      assert.isTrue(Fs.existsSync(pidFile))
      yield* PidFile.write(pidFile)
      assert.isTrue(yield* PidFile.removeIfOwn(pidFile))
      assert.isFalse(Fs.existsSync(pidFile))
      assert.isFalse(yield* PidFile.removeIfOwn(pidFile), "a missing file is not an error")
    }))
})

describe("logs under the runner", () => {
  it("are one line an entry, each naming the runner or the generation and pid that wrote it", async () => {
    const port = await freePort()
    const pidFile = Path.join(tempDir(), "runner.pid")
    const app = [process.execPath, "--import", "tsx", "examples/http-platform.ts", "--port", String(port)]
    const run = track(new Run("src/bin.ts", ["run", "--pid-file", pidFile, "--", ...app]))
    await run.waitForLine(/serving: generation 1 is pid \d+/)
    const from = run.output.length
    process.kill(run.process.pid!, "SIGHUP")
    await run.waitForLine(/upgraded to pid \d+/, from)
    await run.waitForLine(/previous generation \(pid \d+\) has exited/, from)
    run.process.kill("SIGTERM")
    assert.strictEqual(await run.exited(), 0)
    assert.isFalse(Fs.existsSync(pidFile), "the runner took its PID file with it")
    const lines = run.output.join("\n").split("\n").filter((line) => line !== "")
    assert.isAbove(lines.length, 8)
    for (const line of lines) {
      // Effect's pretty logger, as NodeRuntime.runMain installs it in the app, for both processes.
      assert.match(
        line,
        /^\[\d\d:\d\d:\d\d\.\d{3}\] [A-Z]+ \(#\d+\)( \S+=\d+ms)*: (runner|generation \d+) \(pid \d+\): /
      )
    }
    assert.isTrue(lines.some((line) => /generation 2 \(pid \d+\): ready/.test(line)))
  })
})
