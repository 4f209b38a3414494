/**
 * The soak (`npm run test:soak`): 100 chained upgrades of the platform
 * example under continuous load from two separate load processes, one with
 * keep-alive clients and one opening a connection per request. Not one
 * request may fail; the newest generation's descriptors and memory stay
 * flat; a reader polling the PID file never sees it empty or partial.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import { Worker } from "node:worker_threads"
import { startLoad } from "../../bench/lib.js"
import { generations, tempDir } from "../helpers/fixture.js"
import { readPid, startWith, upgrade } from "../helpers/http.js"

const UPGRADES = Number(process.env.TABLEFLIP_SOAK_UPGRADES ?? 100)

const { track } = generations()
const startExample = startWith(track)

/** Open fds of `pid`, by what they are. */
const descriptors = (pid: number) => {
  let sockets = 0
  let other = 0
  for (const fd of Fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (Fs.readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith("socket:")) sockets++
      else other++
    } catch {
      // Closed while we looked.
    }
  }
  return { sockets, other }
}

const rssKb = (pid: number): number =>
  Number(/VmRSS:\s+(\d+) kB/.exec(Fs.readFileSync(`/proc/${pid}/status`, "utf8"))![1])

/**
 * Reads the PID file in a tight loop on a thread of its own (so the test's
 * event loop stays free) and collects every distinct content it saw.
 */
const pollPidFile = (path: string) => {
  const stop = new Int32Array(new SharedArrayBuffer(4))
  const worker = new Worker(
    `
    const { workerData, parentPort } = require("node:worker_threads")
    const fs = require("node:fs")
    const seen = new Set()
    let reads = 0
    while (Atomics.load(workerData.stop, 0) === 0) {
      seen.add(fs.readFileSync(workerData.path, "utf8"))
      reads++
    }
    parentPort.postMessage({ seen: [...seen], reads })
    `,
    { eval: true, workerData: { path, stop } }
  )
  const result = new Promise<{ seen: Array<string>; reads: number }>((resolve, reject) => {
    worker.once("message", resolve)
    worker.once("error", reject)
  })
  return {
    stop: () => {
      Atomics.store(stop, 0, 1)
      return result
    }
  }
}

const median = (values: ReadonlyArray<number>) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!

describe("soak", () => {
  it(`${UPGRADES} chained upgrades under load: no failed request, flat fds and RSS, PID file always whole`, async () => {
    const { pidFile, port, run } = await startExample("examples/http-platform.ts")
    const dir = tempDir()
    const keepAlive = startLoad(port, { clients: 4, keepAlive: true, path: "/", maxSeconds: 1200 }, dir)
    const fresh = startLoad(port, { clients: 2, keepAlive: false, path: "/", maxSeconds: 1200 }, dir)
    const poller = pollPidFile(pidFile)
    const pids = new Set([readPid(pidFile)])

    const samples: Array<{ pid: number; sockets: number; other: number; rssKb: number }> = []
    for (let i = 0; i < UPGRADES; i++) {
      await upgrade(run, pidFile)
      const pid = readPid(pidFile)
      samples.push({ pid, ...descriptors(pid), rssKb: rssKb(pid) })
      pids.add(pid)
    }
    const { reads, seen } = await poller.stop()
    const [kept, opened] = await Promise.all([keepAlive.stop(), fresh.stop()])

    assert.deepStrictEqual(kept.failures, [], "keep-alive clients: no failed request")
    assert.deepStrictEqual(opened.failures, [], "connection-per-request clients: no failed request")
    const served = new Set([...Object.keys(kept.pids), ...Object.keys(opened.pids)])
    assert.isAtLeast(served.size, UPGRADES / 2, "the load reached the generations as they came")

    const first = samples.slice(0, 10)
    const last = samples.slice(-10)
    // Other fds (epoll, pipes, files) must not grow at all; sockets vary with the clients connected.
    assert.isAtMost(Math.max(...last.map((s) => s.other)), Math.max(...first.map((s) => s.other)), "non-socket fds")
    assert.isAtMost(Math.max(...last.map((s) => s.sockets)), Math.max(...first.map((s) => s.sockets)) + 6, "sockets")
    assert.isAtMost(median(last.map((s) => s.rssKb)), median(first.map((s) => s.rssKb)) * 1.25, "RSS")

    assert.isAbove(reads, 1000)
    for (const text of seen) assert.match(text, /^\d+\n$/, "the PID file was never seen empty or partial")
    for (const text of seen) assert.isTrue(pids.has(Number(text)), `the PID file named ${text}, no generation of ours`)
    console.log(JSON.stringify({
      upgrades: UPGRADES,
      requests: kept.latency.length + opened.latency.length,
      pidFileReads: reads,
      fds: { first: first.map((s) => s.sockets + s.other), last: last.map((s) => s.sockets + s.other) },
      rssKb: { first: median(first.map((s) => s.rssKb)), last: median(last.map((s) => s.rssKb)) }
    }))
  })
})
