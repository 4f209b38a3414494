/**
 * `npm run bench`: effect-tableflip against the alternatives, under load.
 *
 * Contenders: effect-tableflip (examples/http-server.ts, upgraded by SIGHUP),
 * the same prepared first (`effect-tableflip prepare`; the prepare counts as
 * part of its upgrade window);
 * naive-restart (stop the old server, then start the new one); cluster-reload
 * (a node:cluster primary replacing its worker as PM2's reload does).
 * Scenarios: keep-alive and `Connection: close` clients, a fast handler and a
 * 50 ms one. Each row: 3 upgrades under load from a separate process.
 *
 * Then the start-up cost of one generation (bench/startup.ts: the same server
 * bare, as a plain Effect app, and with effect-tableflip), SIGHUP to ready
 * cold and prepared (bench/prepare.ts), and the stray-listener check.
 *
 * Writes bench/results/<date>-node<major>.json and .md.
 *
 * Per row: p99 inside upgrade windows (from the signal until the old
 * generation is gone and the new one has served for 1 s) over the steady p99
 * (every other request), signal to ready, signal to the old generation's
 * exit, CPU per upgrade (the old generation's from the signal to its exit,
 * the new one's from its start to ready, from /proc/<pid>/stat) and private
 * memory of each generation.
 *
 *   npm run bench [-- --upgrades 3 --only effect-tableflip --scenarios fast --no-startup]
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { parseArgs } from "node:util"
import type { ContenderName, Upgrade } from "./lib.js"
import {
  contenders,
  effect4Runs,
  freePort,
  root,
  sleep,
  splitByWindows,
  startLoad,
  tempDir,
  WINDOW_TAIL_MS
} from "./lib.js"
import * as Prepare from "./prepare.js"
import * as Startup from "./startup.js"
import * as Strays from "./strays.js"

const { values } = parseArgs({
  options: {
    upgrades: { type: "string", default: "3" },
    only: { type: "string" },
    // Scenarios whose name contains this ("fast", "keep-alive", ...).
    scenarios: { type: "string" },
    // Only the load rows: no floors, start-up probes or strays.
    "no-startup": { type: "boolean", default: false },
    out: { type: "string" }
  }
})
const upgradesPerRow = Number(values.upgrades)

const scenarios = [
  { scenario: "keep-alive, fast handler", keepAlive: true, path: "/", clients: 8 },
  { scenario: "keep-alive, 50 ms handler", keepAlive: true, path: "/?delay=50ms", clients: 32 },
  { scenario: "Connection: close, fast handler", keepAlive: false, path: "/", clients: 8 },
  { scenario: "Connection: close, 50 ms handler", keepAlive: false, path: "/?delay=50ms", clients: 32 }
].filter((s) => values.scenarios === undefined || s.scenario.includes(values.scenarios))

// The Effect 4 build's row when this Node can run it and its tree is built (see bench/startup.ts).
const names: ReadonlyArray<ContenderName> = values.only === undefined
  ? [
    "effect-tableflip",
    "effect-tableflip-prepared",
    ...(effect4Runs ? ["effect-tableflip-effect4" as const] : []),
    "naive-restart",
    "cluster-reload"
  ]
  : [values.only as ContenderName]
if (names.includes("effect-tableflip-effect4") && !effect4Runs) {
  process.stderr.write("effect-tableflip-effect4 needs Node 22.19 or later and the Effect 4 tree built\n")
  process.exit(2)
}

const round = (x: number) => Math.round(x * 10) / 10
const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0

/** Start-up floors: how long Node itself takes, measured here, on this Node. */
const floor = () => {
  const time = (args: ReadonlyArray<string>, runs = 15) => {
    const samples: Array<number> = []
    for (let i = 0; i < runs; i++) {
      const started = performance.now()
      ChildProcess.execFileSync(process.execPath, args, { cwd: root, stdio: "ignore" })
      samples.push(performance.now() - started)
    }
    return round(median(samples))
  }
  const bareServer = "require('http').createServer().listen(0, '127.0.0.1', function () { this.close() })"
  return {
    nodeE0Ms: time(["-e", "0"]),
    bareHttpServerMs: time(["-e", bareServer]),
    libraryImportMs: time([
      "--input-type=module",
      "-e",
      "await import('./dist/Upgrader.js'); await import('./dist/Fds.js'); await import('./dist/Drain.js')"
    ])
  }
}

type Row = {
  readonly contender: string
  readonly scenario: string
  readonly latencyInUpgradeMs: { readonly p99: number }
  readonly latencyOutsideMs: { readonly p99: number }
  readonly p99Ratio: number
  readonly signalToReadyMs: ReadonlyArray<number>
  readonly signalToOldExitMs: ReadonlyArray<number>
  readonly cpuMs: { readonly oldSignalToExit: ReadonlyArray<number>; readonly newStartToReady: ReadonlyArray<number> }
  readonly privateMb: { readonly oldAtSignal: ReadonlyArray<number>; readonly newAtReady: ReadonlyArray<number> }
}

const rows = []
for (const { clients, keepAlive, path, scenario } of scenarios) {
  for (const contender of names) {
    const port = await freePort()
    const dir = tempDir()
    const server = await contenders[contender](port, dir)
    const firstRss = server.rssMb()
    const load = startLoad(port, { clients, keepAlive, path }, dir)
    const startedAt = performance.timeOrigin + performance.now()
    await sleep(1000)
    const upgrades: Array<Upgrade> = []
    for (let i = 0; i < upgradesPerRow; i++) {
      upgrades.push(await server.upgrade())
      // Past the window's tail, then steady load until the next signal.
      await sleep(WINDOW_TAIL_MS + 1000)
    }
    const result = await load.stop()
    const seconds = (performance.timeOrigin + performance.now() - startedAt) / 1000
    await server.stop()
    const { inside, outside } = splitByWindows(result, upgrades)
    const row = {
      contender,
      scenario,
      clients,
      requests: result.start.length,
      failed: result.failures.length,
      errors: [...new Set(result.failures.map((f) => f.error))],
      requestsPerSecond: Math.round(result.start.length / seconds),
      latencyInUpgradeMs: inside,
      latencyOutsideMs: outside,
      p99Ratio: outside.p99 === 0 ? 0 : Math.round((inside.p99 / outside.p99) * 100) / 100,
      signalToReadyMs: upgrades.map((u) => round(u.readyMs)),
      signalToOldExitMs: upgrades.map((u) => round(u.oldExitMs)),
      cpuMs: {
        oldSignalToExit: upgrades.map((u) => u.oldCpuMs),
        newStartToReady: upgrades.map((u) => u.newCpuMs)
      },
      privateMb: {
        oldAtSignal: upgrades.map((u) => u.oldPrivateMb),
        newAtReady: upgrades.map((u) => u.newPrivateMb)
      },
      rssMb: {
        first: firstRss,
        oldAtSignal: upgrades.map((u) => u.oldRssMb),
        newAtReady: upgrades.map((u) => u.newRssMb)
      }
    }
    rows.push(row)
    process.stdout.write(
      `${contender.padEnd(17)} ${scenario.padEnd(33)} failed ${String(row.failed).padStart(4)}  ` +
        `${row.requestsPerSecond} req/s  p99 in/steady ${inside.p99}/${outside.p99} ms (x${row.p99Ratio})  ready ${
          row.signalToReadyMs.join("/")
        } ms  old exit ${row.signalToOldExitMs.join("/")} ms\n`
    )
  }
}

if (values["no-startup"]) {
  const out = values.out ?? Path.join(tempDir(), "rows.json")
  Fs.writeFileSync(out, `${JSON.stringify({ node: process.version, upgradesPerRow, rows }, null, 2)}\n`)
  process.stdout.write(`\n${upgradeTable(rows)}\nwrote ${out}\n`)
  process.exit(0)
}

const floors = floor()
const startup = Startup.measure(15)
const instructions = await Startup.countInstructions()
const prepared = await Prepare.measure(10)
// Last: it leaves 20k loopback sockets in TIME_WAIT for a minute.
const strays = await Strays.measure(20_000)
const ours = rows.filter((r) => r.contender === "effect-tableflip").flatMap((r) => r.signalToReadyMs)
const results = {
  node: process.version,
  date: new Date().toISOString(),
  machine: { cpus: Os.cpus().length, model: Os.cpus()[0]?.model ?? "?", memoryGb: Math.round(Os.totalmem() / 2 ** 30) },
  upgradesPerRow,
  floor: {
    ...floors,
    tableflipSignalToReadyMedianMs: round(median(ours)),
    tableflipAboveBareServerMs: round(median(ours) - floors.bareHttpServerMs)
  },
  startup,
  instructions,
  prepared,
  strays,
  rows
}

const fmt = (l: { n: number; p50: number; p99: number; max: number }) => `${l.p50} / ${l.p99} / ${l.max}`
const md = [
  `### Node ${process.version}: ${results.machine.cpus} cores (${results.machine.model}), ${upgradesPerRow} upgrades per row`,
  "",
  "| contender | scenario | failed | req/s | latency in upgrade windows p50 / p99 / max (ms) | outside | signal to ready (ms) | signal to old exit (ms) | RSS first / new at ready (MB) |",
  "|---|---|---:|---:|---|---|---|---|---|",
  ...rows.map((r) =>
    `| ${r.contender} | ${r.scenario} | ${r.failed}${
      r.errors.length > 0 ? ` (${r.errors.join(", ")})` : ""
    } | ${r.requestsPerSecond} | ${fmt(r.latencyInUpgradeMs)} | ${fmt(r.latencyOutsideMs)} | ${
      r.signalToReadyMs.join(", ")
    } | ${r.signalToOldExitMs.join(", ")} | ${r.rssMb.first} / ${r.rssMb.newAtReady.join(", ")} |`
  ),
  "",
  upgradeTable(rows),
  `Floor on this Node: \`node -e 0\` ${floors.nodeE0Ms} ms; a bare http server's start-up ${floors.bareHttpServerMs} ms; ` +
  `importing Upgrader, Fds and Drain ${floors.libraryImportMs} ms (a process start included). ` +
  `effect-tableflip's signal-to-ready median ${results.floor.tableflipSignalToReadyMedianMs} ms, ` +
  `${results.floor.tableflipAboveBareServerMs} ms above the bare server.`,
  "",
  Startup.markdown(startup),
  Startup.instructionsMarkdown(instructions),
  Prepare.markdown(prepared),
  Strays.markdown(strays)
].join("\n")

/** What issue 16 asks of each scenario: the upgrade's cost against steady serving. */
function upgradeTable(rows: ReadonlyArray<Row>): string {
  const med = (xs: ReadonlyArray<number>) => round(median(xs))
  return [
    `Per upgrade (medians of ${upgradesPerRow}; CPU from /proc/<pid>/stat, 10 ms grain; private = Private_Clean + Private_Dirty):`,
    "",
    "| contender | scenario | p99 in upgrade windows / steady (ms) | ratio | signal to ready (ms) | signal to old exit (ms) | CPU old: signal to exit / new: start to ready (ms) | private MB old / new |",
    "|---|---|---|---:|---:|---:|---|---|",
    ...rows.map((r) =>
      `| ${r.contender} | ${r.scenario} | ${r.latencyInUpgradeMs.p99} / ${r.latencyOutsideMs.p99} | ${r.p99Ratio}× | ${
        med(r.signalToReadyMs)
      } | ${med(r.signalToOldExitMs)} | ${med(r.cpuMs.oldSignalToExit)} / ${med(r.cpuMs.newStartToReady)} | ${
        med(r.privateMb.oldAtSignal)
      } / ${med(r.privateMb.newAtReady)} |`
    ),
    ""
  ].join("\n")
}

const dir = Path.join(root, "bench", "results")
Fs.mkdirSync(dir, { recursive: true })
const base = Path.join(dir, `${results.date.slice(0, 10)}-node${process.versions.node.split(".")[0]}`)
Fs.writeFileSync(`${base}.json`, `${JSON.stringify(results, null, 2)}\n`)
Fs.writeFileSync(`${base}.md`, md)
process.stdout.write(`\n${md}\nwrote ${Path.relative(root, base)}.json and .md\n`)
