/**
 * Warms a new generation's `node:http` server before it takes traffic.
 *
 * A new generation serves its first requests with cold code: functions not
 * yet compiled by the JIT, http internals initialised on first use. Right
 * after `ready` every kept-alive client of the old generation reconnects to
 * it at once, so the slowest requests of an upgrade are those first ones.
 * `Warmup.http` sends the server a few dozen requests of its own first,
 * through a private relay on 127.0.0.1 whose connections are handed to the
 * server (`server.emit("connection", socket)`): warm-up traffic never goes
 * through the shared listening socket, where the old generation, which
 * accepts from the same queue, would answer part of it.
 *
 * Warm-up is an optimisation: it never fails. Answers other than 2xx and
 * connection errors are counted in the report and logged once as a warning;
 * past `timeout` it stops, closes its connections and logs a warning.
 *
 * @since 1.0.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Http from "node:http"
import * as Net from "node:net"
import * as Fx from "./internal/fx.js"
import * as Log from "./internal/log.js"

/**
 * @since 1.0.0
 * @category models
 */
export interface Options {
  /** How many requests to send. Default: 64. */
  readonly requests?: number | undefined
  /**
   * The path every request asks for. It is called `requests` times on each
   * start: choose one the app answers cheaply and without side effects.
   * Default: `/`.
   */
  readonly path?: string | undefined
  /** Default: `GET`. Requests carry no body. */
  readonly method?: string | undefined
  /** Headers sent with every request (`Host` is `127.0.0.1:<relay port>` unless set here). */
  readonly headers?: Readonly<Record<string, string>> | undefined
  /**
   * Requests in flight at a time: half of them on kept-alive connections,
   * half with `Connection: close` (a new connection each), so both paths of
   * the server warm up. Default: 8.
   */
  readonly concurrency?: number | undefined
  /** When warm-up stops, answered or not. Default: 5 seconds. */
  readonly timeout?: Fx.DurationInput | undefined
}

/**
 * What warm-up did.
 *
 * @since 1.0.0
 * @category models
 */
export interface Report {
  /** Requests that got an answer or a connection error. */
  readonly requests: number
  /** Answers other than 2xx, plus connection errors. */
  readonly failed: number
  /** Answers by status code. */
  readonly statuses: Readonly<Record<number, number>>
  /** Requests that got no answer: the connection failed or closed first. */
  readonly errors: number
  /** `timeout` stopped it before every request was answered. */
  readonly timedOut: boolean
  /** From the start to the last connection closed. */
  readonly elapsedMs: number
}

/**
 * Sends `server` `requests` requests through a private relay and waits for
 * their answers, then closes every connection it opened. `server` needs its
 * `request` handler, and need not listen anywhere.
 *
 * Run it before `Fds.listen(options, server)`: until then the server takes
 * no traffic from the shared socket, so clients are not served by a
 * half-warm process, and the old generation keeps serving them meanwhile.
 * Before the `Upgrader` layer is built, even: a prepared generation
 * (`effect-tableflip prepare`) then warms up before it parks, not after the
 * upgrade's `go`. (With `effect-tableflip/HttpServer`, pass `warmup` to
 * `layer` instead: it runs once the app's handlers are attached.)
 *
 * @example
 * ```ts
 * import * as Drain from "effect-tableflip/Drain"
 * import * as Fds from "effect-tableflip/Fds"
 * import * as Upgrader from "effect-tableflip/Upgrader"
 * import * as Warmup from "effect-tableflip/Warmup"
 * import * as Effect from "effect/Effect"
 * import * as Http from "node:http"
 *
 * export const main = Effect.gen(function*() {
 *   const upgrader = yield* Upgrader.Upgrader
 *   const raw = Http.createServer((_request, response) => response.end("hello\n"))
 *   // Before listening: warm-up never reaches the shared socket.
 *   yield* Warmup.http(raw, { path: "/", requests: 64 })
 *   const server = yield* Fds.listen({ host: "127.0.0.1", port: 8080 }, raw)
 *   yield* Drain.http(server)
 *   yield* upgrader.ready
 *   yield* upgrader.exit
 * })
 * ```
 *
 * @since 1.0.0
 * @category constructors
 */
export const http: (server: Http.Server, options?: Options) => Effect.Effect<Report> = Effect.fnUntraced(
  function*(server: Http.Server, options: Options = {}) {
    const plan = planOf(options)
    const tally = new Tally()
    if (plan.requests <= 0) return tally.report(false)
    const timedOut = yield* Effect.scoped(Effect.flatMap(open(server, plan), (relay) => send(relay, plan, tally))).pipe(
      Fx.timeoutTo({ duration: plan.timeout, onSuccess: () => false, onTimeout: () => true }),
      Fx.catchAll((error) => Effect.as(Log.warning(`warm-up skipped: no relay on 127.0.0.1 (${error.message})`), false))
    )
    const report = tally.report(timedOut)
    yield* tell(report, plan, tally)
    return report
  },
  Effect.withLogSpan("warmup")
)

interface Plan {
  readonly requests: number
  readonly path: string
  readonly method: string
  readonly headers: Readonly<Record<string, string>>
  readonly concurrency: number
  readonly timeout: Duration.Duration
}

const planOf = (options: Options): Plan => ({
  requests: Math.max(0, Math.floor(options.requests ?? 64)),
  path: options.path ?? "/",
  method: (options.method ?? "GET").toUpperCase(),
  headers: options.headers ?? {},
  concurrency: Math.max(1, Math.floor(options.concurrency ?? 8)),
  timeout: Fx.decodeDuration(options.timeout ?? Duration.seconds(5))
})

class Tally {
  readonly #start = Date.now()
  readonly statuses: Record<number, number> = {}
  done = 0
  failed = 0
  errors = 0
  /** The first failure, for the warning: `404` or a connection error's message. */
  first: string | undefined

  add(outcome: number | Error): void {
    this.done++
    if (typeof outcome === "number") this.statuses[outcome] = (this.statuses[outcome] ?? 0) + 1
    else this.errors++
    if (typeof outcome === "number" && outcome >= 200 && outcome < 300) return
    this.failed++
    this.first ??= typeof outcome === "number" ? `status ${outcome}` : outcome.message
  }

  report(timedOut: boolean): Report {
    return {
      requests: this.done,
      failed: this.failed,
      statuses: { ...this.statuses },
      errors: this.errors,
      timedOut,
      elapsedMs: Date.now() - this.#start
    }
  }
}

/** One warning at most for failures, one for the timeout: the app starts either way. */
const tell = (report: Report, plan: Plan, tally: Tally): Effect.Effect<void> => {
  const what = `${plan.method} ${plan.path}`
  const lines: Array<Effect.Effect<void>> = []
  if (report.failed > 0) {
    lines.push(Log.warning(
      `warm-up: ${report.failed} of ${report.requests} requests ${what} failed (first: ${tally.first}); ` +
        "choose a path the app answers cheaply and without side effects (Warmup options `path`, `method`)"
    ))
  }
  if (report.timedOut) {
    lines.push(Log.warning(
      `warm-up: stopped at its timeout (${Duration.format(plan.timeout)}) after ${report.requests} of ` +
        `${plan.requests} requests ${what}; the app starts anyway`
    ))
  }
  if (lines.length === 0) {
    lines.push(Log.debug(`warm-up: ${report.requests} requests ${what} in ${report.elapsedMs} ms`))
  }
  return Effect.all(lines, { discard: true })
}

/** The relay and the clients' agents: closed whatever ends warm-up (done, timeout, interruption). */
interface Relay {
  readonly port: number
  readonly keepAlive: Http.Agent
  readonly close: Http.Agent
}

const open = (server: Http.Server, plan: Plan): Effect.Effect<Relay, Error, Scope.Scope> =>
  Effect.acquireRelease(
    Fx.callback<{ readonly relay: Net.Server; readonly sockets: Set<Net.Socket> }, Error>((resume) => {
      const sockets = new Set<Net.Socket>()
      const relay = Net.createServer((socket) => {
        sockets.add(socket)
        socket.once("close", () => sockets.delete(socket))
        server.emit("connection", socket)
      })
      relay.once("error", (error) => resume(Effect.fail(error)))
      relay.listen(0, "127.0.0.1", () => resume(Effect.succeed({ relay, sockets })))
    }),
    ({ relay, sockets }) =>
      Fx.callback<void>((resume) => {
        // Destroyed rather than ended: a handler that never answers would keep its connection
        // open. Done when every socket has emitted `close` (the server's own bookkeeping runs
        // then), which comes after the relay's close callback.
        let closed = false
        let resumed = false
        const finish = () => {
          if (resumed || !closed || sockets.size > 0) return
          resumed = true
          resume(Effect.void)
        }
        relay.close(() => {
          closed = true
          finish()
        })
        for (const socket of sockets) {
          socket.once("close", finish)
          socket.destroy()
        }
      }).pipe(
        // A finalizer is uninterruptible: without this the deadline could not bite.
        Effect.interruptible,
        Fx.timeoutFail({
          duration: Duration.seconds(5),
          onTimeout: () => new Error("its relay's connections did not close within 5 s")
        }),
        Fx.catchAll((error: Error) => Log.warning(`warm-up: ${error.message}; going on`))
      )
  ).pipe(
    Effect.flatMap(({ relay }) =>
      Effect.acquireRelease(
        Effect.sync((): Relay => ({
          port: (relay.address() as Net.AddressInfo).port,
          keepAlive: new Http.Agent({ keepAlive: true, maxSockets: Math.ceil(plan.concurrency / 2) }),
          close: new Http.Agent({ keepAlive: false })
        })),
        ({ close, keepAlive }) =>
          Effect.sync(() => {
            keepAlive.destroy()
            close.destroy()
          })
      )
    )
  )

/** Every request, `concurrency` at a time, alternating kept-alive and `Connection: close`. */
const send = (relay: Relay, plan: Plan, tally: Tally): Effect.Effect<void> =>
  Effect.forEach(
    Array.from({ length: plan.requests }, (_, i) => i % 2 === 1),
    (close) => Effect.map(request(relay, plan, close), (outcome) => tally.add(outcome)),
    { concurrency: plan.concurrency, discard: true }
  )

/** A status code, or the error that stopped the request; never fails. */
const request = (relay: Relay, plan: Plan, close: boolean): Effect.Effect<number | Error> =>
  Fx.callback<number | Error>((resume) => {
    let settled = false
    const settle = (outcome: number | Error) => {
      if (settled) return
      settled = true
      resume(Effect.succeed(outcome))
    }
    const outgoing = Http.request({
      host: "127.0.0.1",
      port: relay.port,
      method: plan.method,
      path: plan.path,
      headers: close ? { ...plan.headers, connection: "close" } : plan.headers,
      agent: close ? relay.close : relay.keepAlive
    }, (response) => {
      response.resume()
      response.once("close", () =>
        settle(
          response.complete
            ? response.statusCode ?? 0
            : new Error(`the connection closed during the answer (status ${response.statusCode})`)
        ))
    })
    outgoing.once("error", settle)
    outgoing.end()
    return Effect.sync(() => outgoing.destroy())
  })
