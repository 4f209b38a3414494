/**
 * The drain's `spread`: kept-alive connections are told to close one after
 * another, not all at once, and no request fails on the way. Real sockets on
 * 127.0.0.1; the assertions are on the order of responses, never on timing.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Http from "node:http"
import type * as Net from "node:net"
import * as Drain from "../src/Drain.js"

interface Response {
  readonly client: number
  /** The server said `Connection: close`. */
  readonly close: boolean
  /** Sent after the drain began. */
  readonly afterBegin: boolean
}

const serve = async () => {
  const server = Http.createServer((_request, response) => response.end("ok"))
  const tracker = Drain.track(server)
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  return { tracker, port: (server.address() as Net.AddressInfo).port }
}

/**
 * Keep-alive clients, one connection each, looping until the server tells
 * theirs to close. Resolves `started` once every client has been answered.
 */
const clients = (port: number, count: number) => {
  const responses: Array<Response> = []
  const failures: Array<string> = []
  let begun = false
  let answered = 0
  let onStarted: () => void
  const started = new Promise<void>((resolve) => (onStarted = resolve))
  const client = async (index: number) => {
    const agent = new Http.Agent({ keepAlive: true, maxSockets: 1 })
    let first = true
    for (;;) {
      const afterBegin = begun
      try {
        const close = await new Promise<boolean>((resolve, reject) => {
          Http.get({ host: "127.0.0.1", port, path: "/", agent }, (response) => {
            response.resume()
            response.on("end", () => resolve(response.headers.connection === "close"))
            response.on("error", reject)
          }).on("error", reject)
        })
        responses.push({ client: index, close, afterBegin })
        if (first && ++answered === count) onStarted()
        first = false
        if (close) break
      } catch (error) {
        failures.push((error as NodeJS.ErrnoException).code ?? String(error))
        break
      }
    }
    agent.destroy()
  }
  const all = Promise.all(Array.from({ length: count }, (_, i) => client(i)))
  return {
    started,
    begin: () => {
      begun = true
    },
    done: async () => {
      await all
      return { responses, failures }
    }
  }
}

describe("Drain.run", () => {
  it("tells kept-alive connections to close one after another over `spread`, and fails no request", async () => {
    const { port, tracker } = await serve()
    const load = clients(port, 4)
    await load.started
    load.begin()
    // Completes once every connection is closed.
    await Effect.runPromise(Drain.run(tracker, { spread: "4 seconds", deadline: "60 seconds" }))
    const { failures, responses } = await load.done()

    assert.deepStrictEqual(failures, [])
    const closes = responses.filter((r) => r.close)
    assert.deepStrictEqual(closes.map((r) => r.client).sort(), [0, 1, 2, 3], "each connection was told to close once")
    const firstClose = responses.indexOf(closes[0]!)
    const last = closes.at(-1)!.client
    assert.isTrue(
      responses.slice(firstClose).some((r) => r.client === last && !r.close),
      "the connection told last was still served, kept alive, after the first was told to close"
    )
  })

  it("with `spread: 0` tells every kept-alive connection to close on its next response", async () => {
    const { port, tracker } = await serve()
    const load = clients(port, 4)
    await load.started
    load.begin()
    await Effect.runPromise(Drain.run(tracker, { spread: 0, deadline: "60 seconds" }))
    const { failures, responses } = await load.done()

    assert.deepStrictEqual(failures, [])
    for (let client = 0; client < 4; client++) {
      // A request already sent when the drain began may still be answered kept alive.
      const keptAfter = responses.filter((r) => r.client === client && r.afterBegin && !r.close)
      assert.strictEqual(keptAfter.length, 0, `client ${client} was kept alive after the drain began`)
    }
  })
})
