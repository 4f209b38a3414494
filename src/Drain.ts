/**
 * A bounded, graceful drain for `node:http` servers.
 *
 * `server.close()` fails about one request per keep-alive connection: it
 * closes connections that look idle between two requests, and the request
 * the client is sending at that moment is lost. The drain instead:
 *
 * 1. stops accepting new connections;
 * 2. answers every later response with `Connection: close`, so kept-alive
 *    clients finish their request here and reconnect to the new generation;
 * 3. after `idleGrace`, closes connections that stay idle;
 * 4. at `deadline`, closes whatever remains.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type * as Http from "node:http"
import * as Net from "node:net"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /**
   * How long a kept-alive connection may stay silent once the drain began
   * before it is closed. Busy clients get `Connection: close` on their next
   * response long before. Default: 1 second.
   */
  readonly idleGrace?: Duration.DurationInput | undefined
  /** When every remaining connection is closed. Default: 30 seconds. */
  readonly deadline?: Duration.DurationInput | undefined
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
    Effect.sync(() => new Tracker(server)),
    (tracker) => run(tracker, options)
  ).pipe(Effect.asVoid)

class Tracker {
  readonly connections = new Set<Net.Socket>()
  readonly responses = new Set<Http.ServerResponse>()
  draining = false
  #onEmpty: (() => void) | undefined

  constructor(readonly server: Http.Server) {
    server.on("connection", (socket: Net.Socket) => {
      this.connections.add(socket)
      socket.once("close", () => {
        this.connections.delete(socket)
        if (this.connections.size === 0) this.#onEmpty?.()
      })
    })
    // Prepended so it runs before the application's handler writes headers.
    server.prependListener("request", (_request: Http.IncomingMessage, response: Http.ServerResponse) => {
      if (this.draining) {
        response.shouldKeepAlive = false
        return
      }
      this.responses.add(response)
      response.once("close", () => this.responses.delete(response))
    })
  }

  begin(onEmpty: () => void): void {
    this.draining = true
    for (const response of this.responses) {
      if (!response.headersSent) response.shouldKeepAlive = false
    }
    this.responses.clear()
    if (this.server.listening) Net.Server.prototype.close.call(this.server)
    if (this.connections.size === 0) return onEmpty()
    this.#onEmpty = onEmpty
  }
}

const run = (tracker: Tracker, options: Options): Effect.Effect<void> => {
  const idleGrace = Duration.toMillis(options.idleGrace ?? Duration.seconds(1))
  return Effect.async<void>((resume) => {
    let sweep: ReturnType<typeof setInterval> | undefined
    const grace = setTimeout(() => {
      tracker.server.closeIdleConnections()
      // A response begun before the drain may still leave its connection kept alive.
      sweep = setInterval(() => tracker.server.closeIdleConnections(), 100)
    }, idleGrace)
    const stopTimers = () => {
      clearTimeout(grace)
      clearInterval(sweep)
    }
    tracker.begin(() => {
      stopTimers()
      resume(Effect.void)
    })
    return Effect.sync(stopTimers)
  }).pipe(
    // Finalizers are uninterruptible; without this the deadline could not cut the wait short.
    Effect.interruptible,
    Effect.timeoutTo({
      duration: options.deadline ?? Duration.seconds(30),
      onSuccess: () => Effect.logDebug("drained"),
      onTimeout: () =>
        Effect.sync(() => {
          const remaining = tracker.connections.size
          tracker.server.closeAllConnections()
          for (const socket of tracker.connections) socket.destroy()
          return remaining
        }).pipe(Effect.flatMap((remaining) => Effect.logWarning(`drain deadline: closed ${remaining} connections`)))
    }),
    Effect.flatten,
    Effect.withLogSpan("drain")
  )
}
