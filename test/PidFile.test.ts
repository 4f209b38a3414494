/**
 * The PID file against real files, links and directories.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as ChildProcess from "node:child_process"
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

  it.effect("fails with a typed error in a directory it may not write, and leaves the old file whole", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const path = Path.join(dir, "app.pid")
      yield* PidFile.write(path, 11)
      // Root ignores mode bits, so as root the directory is made immutable instead.
      const asRoot = process.getuid?.() === 0
      const lock = (on: boolean) =>
        asRoot
          ? assert.strictEqual(ChildProcess.spawnSync("chattr", [on ? "+i" : "-i", dir]).status, 0, "chattr")
          : Fs.chmodSync(dir, on ? 0o555 : 0o755)
      lock(true)
      const error = yield* Effect.flip(PidFile.write(path, 12)).pipe(Effect.ensuring(Effect.sync(() => lock(false))))
      assert.strictEqual(error._tag, "PidFileError")
      assert.include(error.message, path)
      assert.match(error.message, asRoot ? /EPERM/ : /EACCES/)
      assert.strictEqual(Fs.readFileSync(path, "utf8"), "11\n")
      assert.deepStrictEqual(Fs.readdirSync(dir), ["app.pid"])
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
