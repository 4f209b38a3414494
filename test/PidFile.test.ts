/**
 * The PID file against real files, links and directories.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as PidFile from "../src/PidFile.js"
import { tempDir } from "./helpers/fixture.js"

describe("PidFile", () => {
  it.effect("writes the pid with a newline, mode 0644, and reads it back", () =>
    Effect.gen(function*() {
      const path = Path.join(tempDir(), "app.pid")
      yield* PidFile.write(path, 4242)
      assert.strictEqual(Fs.readFileSync(path, "utf8"), "4242\n")
      assert.strictEqual(Fs.statSync(path).mode & 0o777, 0o644)
      assert.strictEqual(yield* PidFile.read(path), 4242)
    }))

  it.effect("fails with a typed error naming the path when the directory is missing", () =>
    Effect.gen(function*() {
      const path = Path.join(tempDir(), "missing", "app.pid")
      const error = yield* Effect.flip(PidFile.write(path))
      assert.strictEqual(error._tag, "PidFileError")
      assert.include(error.message, path)
      assert.include(error.message, "ENOENT")
    }))

  it.effect("replaces a symlink at the path instead of writing through it", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const target = Path.join(dir, "precious")
      Fs.writeFileSync(target, "do not touch\n")
      const path = Path.join(dir, "app.pid")
      Fs.symlinkSync(target, path)
      yield* PidFile.write(path, 7)
      assert.isFalse(Fs.lstatSync(path).isSymbolicLink())
      assert.strictEqual(Fs.readFileSync(path, "utf8"), "7\n")
      assert.strictEqual(Fs.readFileSync(target, "utf8"), "do not touch\n")

      const dangling = Path.join(dir, "dangling.pid")
      Fs.symlinkSync(Path.join(dir, "nowhere"), dangling)
      yield* PidFile.write(dangling, 8)
      assert.strictEqual(Fs.readFileSync(dangling, "utf8"), "8\n")
      assert.isFalse(Fs.existsSync(Path.join(dir, "nowhere")))
      assert.sameMembers(Fs.readdirSync(dir), ["precious", "app.pid", "dangling.pid"], "no temporary file left")
    }))

  it.effect("refuses to read something that is not a pid", () =>
    Effect.gen(function*() {
      const path = Path.join(tempDir(), "app.pid")
      Fs.writeFileSync(path, "12ab\n")
      const error = yield* Effect.flip(PidFile.read(path))
      assert.include(error.message, "not a pid")
    }))
})
