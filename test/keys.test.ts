/**
 * Registry keys: the text the registry, systemd activation and the stray
 * check build, and the parser that reads it back. Pure, in-process.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Keys from "../src/internal/keys.js"

describe("Keys", () => {
  it("builds the texts manifests and messages show", () => {
    assert.strictEqual(Keys.named("web"), "name:web")
    assert.strictEqual(Keys.conn("peer"), "conn:peer")
    assert.strictEqual(Keys.file("log"), "file:log")
    assert.strictEqual(Keys.tcp(undefined, 8080), "tcp:*:8080")
    assert.strictEqual(Keys.tcp("", 8080), "tcp:*:8080")
    assert.strictEqual(Keys.tcp("127.0.0.1", 80), "tcp:127.0.0.1:80")
    assert.strictEqual(Keys.tcp("::1", 80), "tcp:[::1]:80")
    assert.strictEqual(Keys.unix("/run/app.sock"), "unix:/run/app.sock")
    assert.strictEqual(Keys.unix("\0app"), "unix:@app")
    assert.strictEqual(Keys.udp("udp4", undefined, 53), "udp4:*:53")
    assert.strictEqual(Keys.udp("udp6", "::", 53), "udp6:[::]:53")
    assert.strictEqual(Keys.namedOr(undefined, "tcp:*:1"), "tcp:*:1")
    assert.strictEqual(Keys.namedOr("web", "tcp:*:1"), "name:web")
  })

  it("parses what it builds", () => {
    const cases: ReadonlyArray<[string, Keys.Parsed]> = [
      [Keys.named("a:b"), { kind: "name", name: "a:b" }],
      [Keys.conn("peer"), { kind: "conn", name: "peer" }],
      [Keys.file("systemd-3"), { kind: "file", name: "systemd-3" }],
      [Keys.tcp(undefined, 0), { kind: "tcp", host: undefined, port: 0 }],
      [Keys.tcp("10.0.0.1", 443), { kind: "tcp", host: "10.0.0.1", port: 443 }],
      [Keys.tcp("fe80::1", 65535), { kind: "tcp", host: "fe80::1", port: 65535 }],
      [Keys.tcp("localhost", 80), { kind: "tcp", host: "localhost", port: 80 }],
      [Keys.unix("/tmp/a:b.sock"), { kind: "unix", path: "/tmp/a:b.sock" }],
      [Keys.unix("\0abstract"), { kind: "unix", path: "\0abstract" }],
      [Keys.udp("udp4", "0.0.0.0", 53), { kind: "udp", type: "udp4", host: "0.0.0.0", port: 53 }],
      [Keys.udp("udp6", undefined, 5353), { kind: "udp", type: "udp6", host: undefined, port: 5353 }]
    ]
    for (const [key, parsed] of cases) assert.deepStrictEqual(Keys.parse(key), parsed, key)
  })

  it("rejects text no constructor makes", () => {
    for (
      const key of [
        "",
        "web",
        "http:web",
        "unix:",
        "tcp:",
        "tcp:*",
        "tcp:*:",
        "tcp:*:port",
        "tcp:*:70000",
        "tcp:*:-1",
        "tcp:::1:80",
        "tcp::80",
        "udp:*:53"
      ]
    ) {
      assert.isUndefined(Keys.parse(key), key)
    }
  })

  it("names a file by its key", () => {
    assert.strictEqual(Keys.fileName("file:log"), "log")
    assert.strictEqual(Keys.fileName("file:"), "")
    assert.isUndefined(Keys.fileName("name:log"))
  })
})
