/**
 * A prepared upgrade, as an operator runs it: `effect-tableflip prepare`
 * starts the next generation of the compiled example (plain `node`), which
 * loads and parks without a socket; `effect-tableflip upgrade` then hands the
 * parked one the listener. What a parked generation costs when it dies, is
 * replaced, hangs, or outlives its parent.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Http from "node:http"
import * as Path from "node:path"
import { cli } from "./helpers/cli.js"
import { exists, freePort, generations, holdsSocket, listeningInode, Run, tempDir, within } from "./helpers/fixture.js"
import { get, load, readPid } from "./helpers/http.js"

const { track } = generations()

const EXAMPLE = "build/examples/http-server.js"

/** The compiled example on a free port with a PID file, once generation 1 is ready. */
const start = async (env: NodeJS.ProcessEnv = {}) => {
  const port = await freePort()
  const pidFile = Path.join(tempDir(), "app.pid")
  const run = track(new Run(EXAMPLE, ["--port", String(port), "--pid-file", pidFile], { plain: true, env }))
  await within(run.waitForLine(/: ready\b/), 30_000, "generation 1 ready")
  return { run, port, pidFile }
}

/** `effect-tableflip prepare`; resolves with the parked generation's pid. */
const prepare = async (pidFile: string) => {
  const { code, stderr, stdout } = await within(cli(["prepare", "--pid-file", pidFile]), 60_000, "prepare")
  assert.strictEqual(code, 0, `prepare: ${stdout}${stderr}`)
  const match = /^prepared: pid (\d+) -> (\d+)$/m.exec(stdout)
  assert.isNotNull(match, stdout)
  assert.strictEqual(Number(match![1]), readPid(pidFile))
  return Number(match![2])
}

const upgrade = async (pidFile: string) => {
  const { code, stderr, stdout } = await within(cli(["upgrade", "--pid-file", pidFile]), 60_000, "upgrade")
  assert.strictEqual(code, 0, `upgrade: ${stdout}${stderr}`)
  return Number(/^upgraded: pid \d+ -> (\d+)$/m.exec(stdout)![1])
}

const askPid = async (port: number) => Number(/pid (\d+)/.exec((await get(port, new Http.Agent())).body)![1])

/** Resolves once `pid` is gone from /proc (reaped), polling: a process's end has no event to wait on. */
const gone = (pid: number) =>
  within(
    new Promise<void>((resolve) => {
      const look = setInterval(() => {
        if (!exists(pid)) {
          clearInterval(look)
          resolve()
        }
      }, 20)
    }),
    30_000,
    `pid ${pid} reaped`
  )

describe("a prepared upgrade (effect-tableflip prepare, then upgrade)", () => {
  it("parks the next generation without a socket; the upgrade hands the listener to that same process, under load with no failed request", async () => {
    const { pidFile, port, run } = await start()
    const first = readPid(pidFile)
    const parked = await prepare(pidFile)
    assert.notStrictEqual(parked, first)
    assert.isTrue(exists(parked), "the parked generation lives")
    // Parked: it does not hold the listener yet, the old generation alone does.
    const inode = listeningInode(port)!
    assert.isFalse(holdsSocket(parked, inode), "the parked generation holds no listener")
    assert.isTrue(holdsSocket(first, inode))
    assert.strictEqual(await askPid(port), first, "the old generation still serves")

    const clients = load(port, { keepAlive: 6, close: 2 })
    const from = run.output.length
    assert.strictEqual(await upgrade(pidFile), parked, "the prepared generation took over")
    await within(
      run.waitForLine(new RegExp(`previous generation \\(pid ${first}\\) has exited`), from),
      30_000,
      "drain"
    )
    const { failures, pids, requests } = await clients.stop()

    assert.deepStrictEqual(failures, [])
    assert.isAbove(requests, 20)
    assert.isTrue(pids.has(parked), `pids that served: ${[...pids].join(", ")}`)
    assert.strictEqual(readPid(pidFile), parked)
    assert.isTrue(run.output.slice(from).some((line) => line.includes("handing over to the prepared generation 2")))
  })

  it("a parked generation that dies costs nothing; preparing again replaces the parked one, which is reaped", async () => {
    const { pidFile, port, run } = await start()
    const first = readPid(pidFile)
    const crashed = await prepare(pidFile)
    const from = run.output.length
    process.kill(crashed, "SIGKILL")
    await within(
      run.waitForLine(new RegExp(`prepared generation \\(pid ${crashed}\\) was killed by SIGKILL while parked`), from),
      30_000,
      "the old generation notices"
    )
    assert.strictEqual(await askPid(port), first, "the old generation serves on")

    const replaced = await prepare(pidFile)
    const parked = await prepare(pidFile)
    assert.notStrictEqual(parked, replaced)
    await gone(replaced)
    assert.strictEqual(await askPid(port), first)

    assert.strictEqual(await upgrade(pidFile), parked)
    await within(run.exited(), 30_000, "generation 1 exits")
    assert.strictEqual(await askPid(port), parked)
    // A normal upgrade after the prepared one: the new generation prepares nothing of its own.
    const third = await upgrade(pidFile)
    assert.notStrictEqual(third, parked)
    assert.strictEqual(await askPid(port), third)
  })

  it("a generation that does not park within the upgrade timeout is killed; stop kills a parked one", async () => {
    // at-spawn.cjs stops every new generation (SIGSTOP) the instant it starts.
    const { pidFile, port, run } = await start({
      TABLEFLIP_UPGRADE_TIMEOUT: "2s",
      AT_SPAWN: "SIGSTOP",
      NODE_OPTIONS: `--require ${JSON.stringify(Path.resolve("test/fixtures/at-spawn.cjs"))}`
    })
    const first = readPid(pidFile)
    const failed = await within(cli(["prepare", "--pid-file", pidFile]), 60_000, "prepare")
    assert.strictEqual(failed.code, 1, failed.stdout + failed.stderr)
    assert.match(
      failed.stderr,
      /prepare failed: UpgradeTimeout: prepared generation pid (\d+) did not finish loading within 2s/
    )
    const hung = Number(/pid (\d+) did not finish/.exec(failed.stderr)![1])
    assert.isFalse(exists(hung), "killed and reaped before the outcome was recorded")
    assert.strictEqual(await askPid(port), first)

    // SIGTERM to the old generation: it stops, and takes the parked one with it.
    const { pidFile: pidFile2, run: run2 } = await start()
    const parked = await prepare(pidFile2)
    process.kill(readPid(pidFile2), "SIGTERM")
    assert.strictEqual(await within(run2.exited(), 30_000, "stop"), 0)
    await gone(parked)
    run.kill()
  })

  it("is refused, with nothing sent, to an app that does not prepare on SIGUSR2 (the signal would end it)", async () => {
    const port = await freePort()
    const pidFile = Path.join(tempDir(), "app.pid")
    const run = track(
      new Run("build/examples/http-platform.js", ["--port", String(port), "--pid-file", pidFile], { plain: true })
    )
    await within(run.waitForLine(/: ready\b/), 30_000, "generation 1 ready")
    const pid = readPid(pidFile)
    const { code, stderr } = await within(cli(["prepare", "--pid-file", pidFile]), 60_000, "prepare")
    assert.strictEqual(code, 2, stderr)
    assert.include(
      stderr,
      `pid ${pid} from ${pidFile} has no SIGUSR2 handler, so SIGUSR2 would end it; nothing was sent`
    )
    assert.strictEqual(await askPid(port), pid, "still serving")
  })

  it("under the runner: the app's SIGUSR2 reaches the runner, which parks the next generation and hands it the listeners at the upgrade; SIGTERM kills a parked one", async () => {
    const port = await freePort()
    const pidFile = Path.join(tempDir(), "runner.pid")
    const run = track(
      new Run("dist/bin.js", ["run", "--pid-file", pidFile, "--", process.execPath, EXAMPLE, "--port", String(port)], {
        plain: true
      })
    )
    const serving = await within(run.waitForLine(/serving: generation 1 is pid (\d+)/), 30_000, "generation 1")
    const first = Number(/generation 1 is pid (\d+)/.exec(serving)![1])
    const runner = run.process.pid!

    const parked = await prepare(pidFile)
    assert.isTrue(exists(parked))
    assert.isFalse(holdsSocket(parked, listeningInode(port)!), "parked without the listener")
    const clients = load(port, { keepAlive: 4, close: 2 })
    assert.strictEqual(await upgrade(pidFile), parked, "the prepared generation took over")
    await gone(first)
    const { failures, pids } = await clients.stop()
    assert.deepStrictEqual(failures, [])
    assert.isTrue(pids.has(parked))
    assert.strictEqual(readPid(pidFile), runner, "one pid throughout")

    const next = await prepare(pidFile)
    process.kill(runner, "SIGTERM")
    assert.strictEqual(await within(run.exited(), 30_000, "the runner stops"), 0)
    await gone(next)
    await gone(parked)
  })
})
