/**
 * A bounded, graceful drain for `node:http` servers.
 *
 * `server.close()` fails about one request per keep-alive connection: it
 * closes connections that look idle between two requests, and the request
 * the client is sending at that moment is lost. The drain instead:
 *
 * 1. stops accepting new connections (the next generation accepts them);
 * 2. lets requests in flight finish;
 * 3. answers later requests on kept-alive connections with
 *    `Connection: close`, one connection after another, evenly over `spread`
 *    (0 by default: all at once), so that kept-alive clients can reconnect to
 *    the new, cold generation a few at a time rather than all at once;
 * 4. closes connections that stay idle for `idleGrace` after that moment;
 * 5. at `deadline`, closes whatever remains: WebSockets get a close frame
 *    (1001, going away), other connections are destroyed, which interrupts
 *    the Effect handlers still running on them.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type * as Http from "node:http"
import * as Net from "node:net"
import * as Fx from "./internal/fx.js"
import * as Log from "./internal/log.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /**
   * Over how long kept-alive connections are told to close (`Connection:
   * close` on their next response), one after another at even intervals: the
   * first at once, the last at `spread`, so that they do not all reconnect
   * to a new generation that has not served yet at the same moment. It
   * delays the exit of a generation whose clients are busy by up to
   * `spread`. Default: 0, all at once: on a 2-core machine 1 second did not
   * lower the p99 of upgrade windows measurably (docs/benchmark.md, "Reconnect storm").
   */
  readonly spread?: Fx.DurationInput | undefined
  /**
   * How long a kept-alive connection may stay silent after it was due to
   * close before it is closed. Busy clients get `Connection: close` on
   * their next response long before. Default: 1 second.
   */
  readonly idleGrace?: Fx.DurationInput | undefined
  /** When every remaining connection is closed. Default: 30 seconds. */
  readonly deadline?: Fx.DurationInput | undefined
}

/**
 * Connections and responses of a server, watched from the moment it is made.
 *
 * @since 0.1.0
 * @category models
 */
export interface Tracker {
  readonly server: Http.Server
  /** Open connections, WebSockets included. */
  readonly connections: () => number
}

/**
 * Watches `server`'s connections from now on, and drains it when the scope
 * closes. Acquire it after the server's listener, so that it runs first.
 *
 * @since 0.1.0
 * @category constructors
 */
export const http = (server: Http.Server, options: Options = {}): Effect.Effect<void, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => track(server)),
    (tracker) => run(tracker, options)
  ).pipe(Effect.asVoid)

/**
 * Starts watching `server`. Call it before the server accepts connections
 * you will want to drain.
 *
 * @since 0.1.0
 * @category constructors
 */
export const track = (server: Http.Server): Tracker => new ServerTracker(server)

/**
 * Drains a tracked server now; completes when every connection is closed.
 * It is interruptible even inside a finalizer, and bounded by `deadline`.
 *
 * @since 0.1.0
 * @category combinators
 */
export const run = (tracker: Tracker, options: Options = {}): Effect.Effect<void> => {
  const self = tracker as ServerTracker
  const spread = Duration.toMillis(options.spread ?? DEFAULT_SPREAD)
  const idleGrace = Duration.toMillis(options.idleGrace ?? Duration.seconds(1))
  return Fx.callback<void>((resume) => {
    const stop = self.begin(spread, idleGrace, () => resume(Effect.void))
    return Effect.sync(stop)
  }).pipe(
    // Finalizers are uninterruptible; without this the deadline could not cut the wait short.
    Effect.interruptible,
    Fx.timeoutTo({
      duration: options.deadline ?? Duration.seconds(30),
      onSuccess: () => Log.debug("drained"),
      onTimeout: () =>
        Effect.suspend(() => {
          const remaining = self.closeAll()
          return Log.warning(`drain deadline: closed ${remaining} connections`)
        })
    }),
    Effect.flatten,
    Effect.withLogSpan("drain")
  )
}

/** Measured, a spread did not pay for the later exit it costs (docs/benchmark.md, "Reconnect storm"). */
const DEFAULT_SPREAD: Duration.Duration = Duration.zero

/** WebSocket close frame, status 1001 (going away): FIN + opcode 8, unmasked, 2-byte payload. */
const GOING_AWAY = Buffer.from([0x88, 0x02, 0x03, 0xe9])

interface Connection {
  /** Requests received and not yet answered. */
  active: number
  /** When the drain wants this connection gone (ms since epoch); set when the drain begins. */
  closeAt: number
  /** When its last response ended. */
  lastActive: number
  upgraded: boolean
}

class ServerTracker implements Tracker {
  readonly #connections = new Map<Net.Socket, Connection>()
  #draining = false
  #onEmpty: (() => void) | undefined

  constructor(readonly server: Http.Server) {
    server.on("connection", (socket: Net.Socket) => {
      const connection: Connection = { active: 0, closeAt: Infinity, lastActive: Date.now(), upgraded: false }
      if (this.#draining) connection.closeAt = 0
      this.#connections.set(socket, connection)
      socket.once("close", () => {
        this.#connections.delete(socket)
        if (this.#connections.size === 0) this.#onEmpty?.()
      })
    })
    // Prepended so it runs before the application's handler writes headers.
    server.prependListener("request", (request: Http.IncomingMessage, response: Http.ServerResponse) => {
      const connection = this.#connections.get(request.socket)
      if (connection === undefined) return
      connection.active++
      response.once("close", () => {
        connection.active--
        connection.lastActive = Date.now()
      })
      if (this.#draining && Date.now() >= connection.closeAt) response.shouldKeepAlive = false
    })
    server.prependListener("upgrade", (request: Http.IncomingMessage) => {
      const connection = this.#connections.get(request.socket)
      if (connection !== undefined) connection.upgraded = true
    })
  }

  connections = (): number => this.#connections.size

  /** Begins the drain; returns what stops its timers. */
  begin(spread: number, idleGrace: number, onEmpty: () => void): () => void {
    this.#draining = true
    const now = Date.now()
    // Evenly rather than at random moments: with a few connections, random ones bunch up.
    const order = [...this.#connections.values()]
    order.forEach((connection, i) => {
      connection.closeAt = order.length < 2 ? now : now + (spread * i) / (order.length - 1)
    })
    if (this.server.listening) Net.Server.prototype.close.call(this.server)
    const sweep = setInterval(() => this.#sweep(idleGrace), Math.max(10, Math.min(100, idleGrace / 4)))
    const stop = () => clearInterval(sweep)
    this.#onEmpty = () => {
      stop()
      onEmpty()
    }
    if (this.#connections.size === 0) this.#onEmpty()
    return stop
  }

  /** Closes kept-alive connections past their moment that have been silent for longer than the grace. */
  #sweep(idleGrace: number): void {
    const now = Date.now()
    for (const [socket, connection] of this.#connections) {
      if (connection.upgraded || connection.active > 0) continue
      if (now >= Math.max(connection.closeAt, connection.lastActive) + idleGrace) socket.destroy()
    }
  }

  /** Closes everything now; returns how many connections were open. */
  closeAll(): number {
    const remaining = this.#connections.size
    for (const [socket, connection] of this.#connections) {
      if (connection.upgraded && socket.writable) socket.end(GOING_AWAY)
      else socket.destroy()
    }
    return remaining
  }
}
