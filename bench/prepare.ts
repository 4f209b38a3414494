/**
 * SIGHUP to ready, cold and prepared: the compiled http-server example (plain
 * `node`) is upgraded `rounds` times each way, alternating, idle. Cold: a
 * SIGHUP starts the next generation from nothing. Prepared: `effect-tableflip
 * prepare` parks the next one first, then the SIGHUP hands it the listener.
 * Each time is the old generation's own record of the attempt (`startedAt`
 * at the signal, `endedAt` when the new generation said ready) in
 * `app.pid.upgrade.json`.
 *
 *   node --import tsx bench/prepare.ts [--rounds 10]      (after npm run build)
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { parseArgs } from "node:util"
import { freePort, root, tempDir } from "./lib.js"

const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0
const max = (xs: ReadonlyArray<number>) => Math.max(...xs)

const cli = (args: ReadonlyArray<string>): string => {
  const result = ChildProcess.spawnSync(process.execPath, [Path.join(root, "dist/bin.js"), ...args], {
    encoding: "utf8",
    timeout: 120_000
  })
  if (result.status !== 0) throw new Error(`effect-tableflip ${args.join(" ")}: ${result.stdout}${result.stderr}`)
  return result.stdout
}

/** The last upgrade's SIGHUP-to-ready, from the old generation's record. */
const lastUpgradeMs = (pidFile: string): number => {
  const outcome = JSON.parse(Fs.readFileSync(`${pidFile}.upgrade.json`, "utf8")) as {
    readonly startedAt: number
    readonly endedAt: number
  }
  return outcome.endedAt - outcome.startedAt
}

export const measure = async (rounds: number) => {
  const port = await freePort()
  const pidFile = Path.join(tempDir(), "app.pid")
  const app = ChildProcess.spawn(
    process.execPath,
    [Path.join(root, "build/examples/http-server.js"), "--port", String(port), "--pid-file", pidFile],
    { cwd: root, stdio: ["ignore", "ignore", "inherit"] }
  )
  const cold: Array<number> = []
  const prepared: Array<number> = []
  try {
    // The first generation is ready once it wrote the PID file.
    for (let i = 0; !Fs.existsSync(pidFile); i++) {
      if (i > 600) throw new Error("the example did not start within 60 s")
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    for (let i = 0; i < rounds; i++) {
      cli(["upgrade", "--pid-file", pidFile])
      cold.push(lastUpgradeMs(pidFile))
      cli(["prepare", "--pid-file", pidFile])
      cli(["upgrade", "--pid-file", pidFile])
      prepared.push(lastUpgradeMs(pidFile))
    }
  } finally {
    // Every generation: the one in the PID file now; the first one exited at its upgrade.
    const pid = Number(Fs.readFileSync(pidFile, "utf8"))
    try {
      process.kill(pid, "SIGTERM")
    } catch {
      // Already gone.
    }
    app.kill("SIGKILL")
  }
  return {
    rounds,
    node: process.version,
    cold: { medianMs: median(cold), maxMs: max(cold) },
    prepared: { medianMs: median(prepared), maxMs: max(prepared) }
  }
}

export const markdown = (result: Awaited<ReturnType<typeof measure>>): string =>
  [
    `### SIGHUP to ready, cold and prepared (${result.node}, ${result.rounds} of each, idle)`,
    "",
    "| upgrade | median | max |",
    "|---|---|---|",
    `| cold (SIGHUP starts the next generation) | ${result.cold.medianMs} ms | ${result.cold.maxMs} ms |`,
    `| prepared (\`effect-tableflip prepare\` first) | ${result.prepared.medianMs} ms | ${result.prepared.maxMs} ms |`,
    ""
  ].join("\n")

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { rounds: { type: "string", default: "10" } } })
  const result = await measure(Number(values.rounds))
  console.log(markdown(result))
  console.log(JSON.stringify(result))
}
