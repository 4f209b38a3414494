/**
 * The stray-listener check that runs before every upgrade, in-process, on a
 * machine with 20k loopback sockets in TIME_WAIT (a busy server always has
 * them): it names exactly this process's listeners the registry does not
 * know, TCP and unix, and nothing else. Its cost is measured in the
 * benchmark (`bench/strays.ts`), not here.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import { timeWait } from "../bench/strays.js"
import * as Handles from "../src/internal/handles.js"
import * as Keys from "../src/internal/keys.js"
import * as Procfs from "../src/internal/procfs.js"
import * as Strays from "../src/internal/strays.js"
import { tempDir } from "./helpers/fixture.js"

const listening = (server: Net.Server, ...args: ReadonlyArray<unknown>) =>
  new Promise<Net.Server>((resolve) => server.listen(...(args as [number, string]), () => resolve(server)))

describe("the stray-listener check", () => {
  it(
    "names this process's unregistered TCP and unix listeners, and nothing else, among 20k TIME_WAIT sockets",
    async () => {
      await timeWait(20_000)
      const tcpLines = ["/proc/net/tcp", "/proc/net/tcp6"]
        .map((file) => Fs.readFileSync(file, "utf8").split("\n").length - 2)
        .reduce((a, b) => a + b, 0)
      assert.isAtLeast(tcpLines, 20_000, "the TIME_WAIT sockets are there")

      const known = await listening(Net.createServer(), 0, "127.0.0.1")
      const stray = await listening(Net.createServer(), 0, "127.0.0.1")
      const path = Path.join(tempDir(), "stray.sock")
      const strayUnix = await listening(Net.createServer(), path as never)
      try {
        const inode = Procfs.socketInode(Handles.serverFd(known)!)!
        const found = Strays.find(new Set([inode]))
        const port = (server: Net.Server) => (server.address() as Net.AddressInfo).port
        assert.sameMembers([...found], [Keys.tcp("127.0.0.1", port(stray)), Keys.unix(path)])
        assert.notInclude([...found], Keys.tcp("127.0.0.1", port(known)))
      } finally {
        for (const server of [known, stray, strayUnix]) server.close()
      }
    },
    120_000
  )
})
