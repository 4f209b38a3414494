/**
 * The native addon's argument checks, on the real addon with real sockets and
 * files: a wrong argument throws a TypeError or RangeError naming the call,
 * and never reaches a system call truncated or wrapped.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import * as Native from "../src/internal/native.js"
import { tempDir, within } from "./helpers/fixture.js"

const addon = () => {
  const { addon, reason } = Native.load()
  if (addon === undefined) throw new Error(reason)
  return addon
}

/** A unix server and a connected fd from the addon; resolves with what the server reads, once `done` closes it. */
const connected = async () => {
  const path = Path.join(tempDir(), "s.sock")
  let received = ""
  const closed = new Promise<string>((resolve) => {
    const server = Net.createServer((socket) => {
      socket.setEncoding("utf8").on("data", (chunk: string) => (received += chunk)).on("end", () => {
        server.close()
        resolve(received)
      })
    })
    server.listen(path)
  })
  await within(
    new Promise<void>((resolve) => {
      const check = () => (Fs.existsSync(path) ? resolve() : setImmediate(check))
      check()
    }),
    10_000,
    "the server"
  )
  return { path, fd: addon().connect(path), closed }
}

describe("native addon", () => {
  it("lock refuses a path of 4096 bytes or more instead of truncating it", () => {
    const dir = tempDir()
    // "./" pads without naming new directories: cut at 4095 bytes, this names a prefix of the file.
    const name = "x".repeat(200)
    const path = `${dir}/${"./".repeat(Math.ceil((4200 - dir.length - name.length) / 2))}${name}`
    assert.isAbove(Buffer.byteLength(path), 4095)
    assert.throws(() => addon().lock(path), RangeError, /lock: path must be 1 to 4095 bytes long/)
    assert.deepStrictEqual(Fs.readdirSync(dir), [], "nothing was created")
    assert.throws(() => addon().lock(`${dir}/a\0b`), TypeError, /must not contain a NUL byte/)
    assert.throws(() => addon().lock(42 as unknown as string), TypeError, /lock: path must be a string/)
    assert.deepStrictEqual(Fs.readdirSync(dir), [])
  })

  it("sendFds checks its socket, fds and data, and sends nothing when one is wrong", async () => {
    const { closed, fd } = await connected()
    const native = addon()
    // 2^32 + fd was wrapped to fd, and sent on.
    assert.throws(() => native.sendFds(2 ** 32 + fd, [], "wrapped"), RangeError, /sendFds: socket must be an integer/)
    assert.throws(() => native.sendFds(fd, [2 ** 32 + 1], "wrapped"), RangeError, /every element of fds/)
    assert.throws(() => native.sendFds(fd, [-1], "x"), RangeError)
    assert.throws(() => native.sendFds(fd, [1.5], "x"), RangeError)
    assert.throws(() => native.sendFds(fd, ["1"] as unknown as Array<number>, "x"), TypeError)
    assert.throws(() => native.sendFds(fd, 3 as unknown as Array<number>, "x"), TypeError, /fds must be an array/)
    assert.throws(() => native.sendFds(fd, Array(254).fill(0), "x"), RangeError, /at most 253/)
    // A data argument that is not a string was sent as an empty message.
    assert.throws(() => native.sendFds(fd, [], 42 as unknown as string), TypeError, /data must be a Buffer or a string/)
    assert.throws(() => native.sendFds(fd, [], ""), RangeError, /at least one byte/)
    assert.strictEqual(native.sendFds(fd, [], Buffer.from("ok")), 2)
    Fs.closeSync(fd)
    assert.strictEqual(await within(closed, 10_000, "the server's end"), "ok", "only the valid call sent anything")
  })

  it("every other call checks its arguments", async () => {
    const native = addon()
    const { fd } = await connected()
    assert.throws(() => native.reap(2 ** 32 + 1), RangeError, /reap: pid must be an integer from 1/)
    assert.throws(() => native.reap(0), RangeError)
    assert.throws(() => native.peerCred(-1), RangeError, /peerCred: socket/)
    assert.throws(() => native.peerCred(Number.NaN), RangeError)
    assert.throws(
      () => native.connect(`/tmp/${"x".repeat(200)}`),
      RangeError,
      /connect: the socket path must be 1 to 107 bytes/
    )
    assert.throws(() => native.connect("/tmp/a\0b"), TypeError, /NUL/)
    assert.throws(
      () => native.notify("/tmp/x", 7 as unknown as string),
      TypeError,
      /notify: the message must be a string/
    )
    assert.throws(() => native.notify("/tmp/x", "x".repeat(5000)), RangeError, /4095 bytes/)
    assert.throws(() => native.recvFds(fd, 0), RangeError, /recvFds: maxBytes/)
    assert.throws(
      () => native.waitReadable(fd, 5000),
      RangeError,
      /waitReadable: timeoutMs must be an integer from 0 to 1000/
    )
    // Nothing to read yet: null at once, and a bounded wait that says "not yet".
    assert.isNull(native.recvFds(fd, 16))
    assert.isFalse(await native.waitReadable(fd, 10))
    Fs.closeSync(fd)
  })
})
