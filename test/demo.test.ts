/**
 * `npm run demo` as a new user runs it, shortened: it must report zero
 * failed requests, in its JSON form, and say so with its exit code.
 */
import { assert, describe, it } from "@effect/vitest"
import * as ChildProcess from "node:child_process"
import { root } from "./helpers/fixture.js"

describe("npm run demo", () => {
  it("upgrades twice under keep-alive load with zero failed requests and reports it as JSON", async () => {
    const demo = ChildProcess.spawn("npm", [
      "run",
      "--silent",
      "demo",
      "--",
      "--json",
      "--upgrades",
      "2",
      "--clients",
      "4"
    ], {
      cwd: root,
      stdio: ["ignore", "pipe", "inherit"]
    })
    let output = ""
    demo.stdout.setEncoding("utf8").on("data", (chunk: string) => (output += chunk))
    const code = await new Promise<number | null>((resolve) => demo.once("exit", resolve))
    const summary = JSON.parse(output.trim().split("\n").at(-1)!)

    assert.strictEqual(code, 0)
    assert.strictEqual(summary.failed, 0)
    assert.isAbove(summary.requests, 0)
    assert.strictEqual(summary.upgrades.length, 2)
    for (const upgrade of summary.upgrades) {
      assert.isAbove(upgrade.readyMs, 0)
      assert.isAtLeast(upgrade.oldExitMs, upgrade.readyMs, "the old generation leaves only after the new one is ready")
    }
    assert.strictEqual(new Set(summary.pids).size, 3)
  }, 120_000)
})
