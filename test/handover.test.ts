/**
 * A broken handover is a typed error when the layer is built, naming what was
 * wrong, and never a silent fresh start.
 */
import { afterEach, assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { Run, tempDir, writePlan } from "./helpers/fixture.js"

const runs: Array<Run> = []
afterEach(() => {
  for (const run of runs.splice(0)) run.kill()
})

const ENV = "EFFECT_TABLEFLIP_HANDOVER"

const startWith = (handover: string, extraStdio: Array<"pipe" | number> = []) => {
  const dir = tempDir()
  const planFile = Path.join(dir, "plan.json")
  writePlan(planFile, { listen: [{ host: "127.0.0.1", port: 0 }] })
  const run = new Run("test/fixtures/generation.ts", ["--plan", planFile], { env: { [ENV]: handover }, extraStdio })
  runs.push(run)
  return run
}

const manifest = (fields: object = {}) =>
  JSON.stringify({ version: 1, generation: 2, parentPid: 1, cwd: "/", control: 3, fds: [], ...fields })

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
      startWith(manifest({ fds: [{ kind: "tcp", key: "x", fd: 4, address: "127.0.0.1", port: "80" }] })),
      "Malformed",
      /does not match the manifest schema[\s\S]*port/
    )
  })

  it("rejects a handover environment set by hand with no fds behind it", async () => {
    // Without a parent placing them, fds 3..16 belong to Node's own event loop (pipes, eventfd, epoll):
    // the check sees they are not the sockets the manifest names.
    const listener = { kind: "tcp", key: "tcp:127.0.0.1:1", fd: 15, address: "127.0.0.1", port: 1, family: "IPv4" }
    await expectFailure(
      startWith(manifest({ fds: [listener] })),
      "WrongKind",
      /fd 15 should be a socket but is .*started by hand with a copied environment/
    )
    await expectFailure(startWith(manifest()), "WrongKind", /fd 3 should be a socket but is /)
  })

  it("rejects a descriptor of the wrong kind", async () => {
    const file = Path.join(tempDir(), "not-a-socket")
    const fd = Fs.openSync(file, "w+")
    try {
      const run = startWith(
        manifest({
          fds: [{ kind: "tcp", key: "tcp:127.0.0.1:1", fd: 4, address: "127.0.0.1", port: 1, family: "IPv4" }]
        }),
        ["pipe", fd]
      )
      await expectFailure(run, "WrongKind", /fd 4 should be a socket/)
    } finally {
      Fs.closeSync(fd)
    }
  })
})
