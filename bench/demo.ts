/**
 * `npm run demo`: a live upgrade under load. Starts examples/http-server.ts,
 * drives keep-alive clients at it from a separate process, upgrades it with
 * SIGHUP N times, and reports what the clients saw.
 *
 *   npm run demo [-- --upgrades 5 --clients 8 --json]
 *
 * Exits non-zero if any request failed.
 */
import { parseArgs } from "node:util"
import { contenders, freePort, sleep, startLoad, tempDir } from "./lib.js"
import type { Upgrade } from "./lib.js"

const { values } = parseArgs({
  options: {
    upgrades: { type: "string", default: "5" },
    clients: { type: "string", default: "8" },
    json: { type: "boolean", default: false }
  }
})
const upgrades = Number(values.upgrades)
const say = (line: string) => {
  if (!values.json) process.stdout.write(`${line}\n`)
}

const port = await freePort()
const dir = tempDir()
say(`effect-tableflip demo: examples/http-server.ts on http://127.0.0.1:${port}/, ${values.clients} keep-alive clients`)
const server = await contenders["effect-tableflip"](port, dir)
const firstPid = server.pid()
say(`generation 1 ready, pid ${firstPid}`)
const load = startLoad(port, { clients: Number(values.clients), keepAlive: true, path: "/" }, dir)
await sleep(1000)

const done: Array<Upgrade> = []
for (let i = 1; i <= upgrades; i++) {
  const upgrade = await server.upgrade()
  done.push(upgrade)
  const { failed, requests } = load.progress()
  say(
    `upgrade ${i}/${upgrades}: SIGHUP to pid ${upgrade.oldPid} -> pid ${upgrade.newPid} ready in ` +
      `${upgrade.readyMs.toFixed(0)} ms, old generation gone at ${upgrade.oldExitMs.toFixed(0)} ms ` +
      `| ${requests} requests, ${failed} failed`
  )
  await sleep(1000)
}
const result = await load.stop()
await server.stop()

const failed = result.failures.length
const pids = [firstPid, ...done.map((u) => u.newPid)]
const summary = {
  requests: result.start.length,
  failed,
  upgrades: done.map((u) => ({
    readyMs: Math.round(u.readyMs),
    oldExitMs: Math.round(u.oldExitMs),
    oldPid: u.oldPid,
    newPid: u.newPid
  })),
  pids,
  servedBy: result.pids
}

if (values.json) {
  process.stdout.write(`${JSON.stringify(summary)}\n`)
} else {
  say("")
  say(`requests  ${summary.requests}`)
  say(`failed    ${failed}${failed === 0 ? "" : `  (${[...new Set(result.failures.map((f) => f.error))].join(", ")})`}`)
  say("")
  say("| upgrade | old pid | new pid | signal to ready (ms) | signal to old exit (ms) | requests served by old pid |")
  say("|---:|---:|---:|---:|---:|---:|")
  summary.upgrades.forEach((u, i) =>
    say(`| ${i + 1} | ${u.oldPid} | ${u.newPid} | ${u.readyMs} | ${u.oldExitMs} | ${result.pids[u.oldPid] ?? 0} |`)
  )
  say("")
  say(
    failed === 0
      ? `zero failed requests across ${upgrades} upgrades, served by ${pids.length} pids`
      : `${failed} requests FAILED`
  )
}
process.exitCode = failed === 0 ? 0 : 1
