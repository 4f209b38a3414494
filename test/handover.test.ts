/**
 * A broken handover is a typed error when the layer is built, naming what was
 * wrong, and never a silent fresh start.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Dgram from "node:dgram"
import * as Net from "node:net"
import * as Path from "node:path"
import { serverHandle } from "../src/internal/handles.js"
import type { Plan } from "./fixtures/generation.js"
import { generations, holdsSocket, listeningInode, Run, tempDir, within, writePlan } from "./helpers/fixture.js"

const { track } = generations()

const ENV = "EFFECT_TABLEFLIP_HANDOVER"

const startWith = (
  handover: string,
  extraStdio: Array<"pipe" | "ipc" | number> = [],
  env: NodeJS.ProcessEnv = {},
  plan: Partial<Plan> = {}
) => {
  const dir = tempDir()
  const planFile = Path.join(dir, "plan.json")
  writePlan(planFile, { listen: [{ host: "127.0.0.1", port: 0 }], ...plan })
  const run = new Run("test/fixtures/generation.ts", ["--plan", planFile], {
    env: { ...env, [ENV]: handover },
    extraStdio
  })
  track(run)
  return run
}

const manifest = (fields: object = {}) =>
  JSON.stringify({ version: 1, generation: 2, parentPid: 1, cwd: "/", fds: [], ...fields })

const expectFailure = async (run: Run, reason: string, pattern: RegExp) => {
  const failed = await run.waitFor((e) => e.event === "failed")
  assert.strictEqual(failed.tag, "HandoverError")
  assert.strictEqual(failed.reason, reason)
  assert.match(failed.message, pattern)
  assert.strictEqual(await run.exited(), 1)
  assert.isUndefined(run.events.find((e) => e.event === "serving"), "nothing was bound in place of the handover")
}

describe("handover", () => {
  it("rejects a manifest that is not JSON", async () => {
    await expectFailure(startWith("{\"version\": 1, "), "Malformed", /EFFECT_TABLEFLIP_HANDOVER is not JSON/)
  })

  it("rejects a manifest of another protocol version", async () => {
    await expectFailure(startWith(manifest({ version: 99 })), "Version", /protocol version 99, this build speaks 1/)
  })

  it("rejects a manifest that does not match the schema", async () => {
    await expectFailure(
      startWith(manifest({ fds: [{ kind: "tcp", key: "x", address: "127.0.0.1", port: "80" }] })),
      "Malformed",
      /does not match the manifest schema[\s\S]*port/
    )
  })

  it("rejects a handover environment set by hand, with no previous generation behind it", async () => {
    const listener = { kind: "tcp", key: "tcp:127.0.0.1:1", address: "127.0.0.1", port: 1, family: "IPv4" }
    await expectFailure(
      startWith(manifest({ fds: [listener] })),
      "MissingFd",
      /no IPC channel to a previous generation at fd 3; was this process started by hand/
    )
  })

  it("rejects a socket of the wrong kind, and a previous generation that goes away mid-handover", async () => {
    const tcp = { kind: "tcp", key: "tcp:127.0.0.1:1", address: "127.0.0.1", port: 1, family: "IPv4" }
    // The test plays the previous generation on the IPC channel and sends a UDP socket for a TCP listener.
    const wrong = startWith(manifest({ fds: [tcp] }), ["ipc"])
    const udp = Dgram.createSocket("udp4")
    await new Promise<void>((resolve) => udp.bind(0, "127.0.0.1", resolve))
    wrong.process.send({ tableflip: "descriptor", key: tcp.key }, udp)
    await expectFailure(wrong, "WrongKind", /tcp:127.0.0.1:1 should be a tcp socket but arrived as Socket/)
    udp.close()

    const gone = startWith(manifest({ fds: [tcp] }), ["ipc"])
    gone.process.disconnect()
    await expectFailure(gone, "MissingFd", /went away before it handed over tcp:127.0.0.1:1/)
  })

  it("gives up within its deadline on a channel at fd 3 that is open but silent", async () => {
    const tcp = { kind: "tcp", key: "tcp:127.0.0.1:1", address: "127.0.0.1", port: 1, family: "IPv4" }
    // A plain socket pair, not a Node IPC channel: nothing ever arrives on it. The deadline is the
    // upgrade timeout the previous generation passes in the manifest.
    const started = Date.now()
    const silent = startWith(manifest({ fds: [tcp], upgradeTimeoutMillis: 2000 }), ["pipe"], { NODE_CHANNEL_FD: "3" })
    await within(
      expectFailure(silent, "Timeout", /handed over nothing of tcp:127.0.0.1:1 within 2s/),
      30_000,
      "the handover's failure"
    )
    assert.isAtLeast(Date.now() - started, 2000)
  })

  it("closes every socket the manifest does not name, or names a second time", async () => {
    // The test plays the previous generation: four listening sockets, two of them named in the manifest.
    const servers = Array.from({ length: 4 }, () => Net.createServer())
    await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))))
    const [kept, twice, unknown, other] = servers.map((server) => {
      const { port } = server.address() as Net.AddressInfo
      return { port, inode: listeningInode(port)!, handle: serverHandle(server)! }
    })
    const descriptor = (name: string, port: number) => ({
      kind: "tcp",
      key: `name:${name}`,
      address: "127.0.0.1",
      port,
      family: "IPv4"
    })
    const run = startWith(
      manifest({ fds: [descriptor("k", kept!.port), descriptor("l", other!.port)] }),
      ["ipc"],
      {},
      {
        listen: [{ host: "127.0.0.1", port: kept!.port, name: "k" }, {
          host: "127.0.0.1",
          port: other!.port,
          name: "l"
        }]
      }
    )
    // In this order, the last named socket arrives after the two strays: by then they are closed.
    for (
      const [key, { handle }] of [["name:k", kept!], ["name:unknown", unknown!], ["name:k", twice!], [
        "name:l",
        other!
      ]] as const
    ) {
      run.process.send({ tableflip: "descriptor", key }, handle as never, { keepOpen: true })
    }
    const ready = await within(run.waitFor((e) => e.event === "ready"), 30_000, "the new generation is ready")
    assert.isTrue(holdsSocket(ready.pid, kept!.inode), "the socket named k is adopted")
    assert.isTrue(holdsSocket(ready.pid, other!.inode), "the socket named l is adopted")
    assert.isFalse(holdsSocket(ready.pid, twice!.inode), "the second socket under k is closed")
    assert.isFalse(
      holdsSocket(ready.pid, unknown!.inode),
      "the socket under a key the manifest does not name is closed"
    )
    // Said so in the log, which precedes `ready` on the same stdout.
    assert.isTrue(run.output.some((line) => line.includes("sent under name:unknown, which the manifest does not name")))
    assert.isTrue(run.output.some((line) => line.includes("sent a second time under name:k")))
    for (const server of servers) server.close()
  })
})
