/**
 * The stray-listener check that runs before every upgrade, on a machine with
 * many sockets: `count` connections to a loopback server are opened and
 * closed by the client first, which leaves them in TIME_WAIT (for a minute),
 * then the check is timed both ways: through the addon (this process's own
 * fds) and by reading /proc/net (every socket of the namespace).
 *
 *   node --import tsx bench/strays.ts [--count 20000]
 */
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Native from "../src/internal/native.js"
import * as Procfs from "../src/internal/procfs.js"

const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0
const round = (x: number) => Math.round(x * 100) / 100

/** Opens and closes `count` loopback connections, spread over source addresses so no port range runs dry. */
export const timeWait = async (count: number): Promise<void> => {
  const server = Net.createServer((socket) => socket.on("error", () => {}))
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const { port } = server.address() as Net.AddressInfo
  let next = 0
  const worker = async () => {
    while (next < count) {
      const i = next++
      await new Promise<void>((resolve) => {
        const socket = Net.connect({ host: "127.0.0.1", port, localAddress: `127.0.${1 + (i % 200)}.${2 + (i % 50)}` })
        socket.once("connect", () => socket.destroy())
        socket.once("close", () => resolve())
        socket.once("error", () => resolve())
      })
    }
  }
  await Promise.all(Array.from({ length: 64 }, worker))
  await new Promise<void>((resolve) => server.close(() => resolve()))
}

const timeIt = (f: () => unknown, runs = 21) => {
  const samples: Array<number> = []
  for (let i = 0; i < runs; i++) {
    const started = performance.now()
    f()
    samples.push(performance.now() - started)
  }
  return round(median(samples))
}

export const measure = async (count: number) => {
  await timeWait(count)
  // TIME_WAIT sockets have no inode, so Procfs.sockets() leaves them out; the kernel still lists them.
  const machineSockets = ["/proc/net/tcp", "/proc/net/tcp6"]
    .map((file) => Fs.readFileSync(file, "utf8").split("\n").length - 2)
    .reduce((a, b) => a + b, 0)
  const { addon } = Native.load()
  const ownFds = () => {
    for (const fd of Procfs.ownSockets().values()) addon?.listening(fd)
  }
  return {
    timeWait: count,
    machineSockets,
    addonMs: addon === undefined ? null : timeIt(ownFds),
    procNetMs: timeIt(() => Procfs.sockets())
  }
}

export const markdown = (r: Awaited<ReturnType<typeof measure>>): string =>
  `Stray-listener check before an upgrade, with ${r.machineSockets} TCP sockets on the machine (${r.timeWait} ` +
  `left in TIME_WAIT): ${r.addonMs ?? "(no addon)"} ms through the addon (this process's own fds), ` +
  `${r.procNetMs} ms reading /proc/net (the fallback without it).\n`

if (import.meta.url === `file://${process.argv[1]}`) {
  const count = Number(process.argv[process.argv.indexOf("--count") + 1] ?? 20000) || 20000
  process.stdout.write(markdown(await measure(count)))
}
