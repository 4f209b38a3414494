/**
 * What `HttpServer` does around the platform's Node server, the same on Effect 3
 * (`@effect/platform`) and Effect 4 (`effect/http`): listen through the registry, make the
 * platform's `listen()` a no-op on the adopted socket, drain before the handlers are detached,
 * and warm the app up once it is attached. `HttpServer.ts` and `HttpServer.effect4.ts` only
 * build the platform's server on top.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type { LazyArg } from "effect/Function"
import type * as Scope from "effect/Scope"
import * as Http from "node:http"
import * as Drain from "../../Drain.js"
import * as Fds from "../../Fds.js"
import type { ListenError } from "../../UpgradeError.js"
import * as Warmup from "../../Warmup.js"

/** What `HttpServer.Options` holds (documented there). @internal */
export interface Options extends Drain.Options {
  readonly server?: LazyArg<Http.Server> | undefined
  readonly warmup?: Warmup.Options | undefined
}

/** A server listening on a registry socket, for the platform's `NodeHttpServer.make`. @internal */
export interface Adopted {
  readonly server: Http.Server
  /** Wraps the platform's `serve`: drain first when the serving scope closes, then warm up. */
  readonly serving: <R>(serve: Effect.Effect<void, never, R>) => Effect.Effect<void, never, R | Scope.Scope>
}

/** Listens through the registry; the platform's server is built on `server` next. @internal */
export const listen = (
  listen: Fds.ListenOptions,
  options: Options
): Effect.Effect<Adopted, ListenError, Fds.Fds | Scope.Scope> =>
  Effect.gen(function*() {
    const server = options.server?.() ?? Http.createServer()
    const tracker = Drain.track(server)
    yield* Fds.listen(listen, server)
    reportListening(server, listen)
    return {
      server,
      serving: (serve) =>
        Effect.andThen(
          serve,
          // Added after the platform's own finalizer, so it runs first: the drain needs the
          // handlers attached to answer what is still in flight.
          Effect.addFinalizer(() => Drain.run(tracker, options))
        ).pipe(
          // The server already listens here, but the relay keeps warm-up off the shared socket.
          Effect.tap(() => options.warmup === undefined ? Effect.void : Warmup.http(server, options.warmup))
        )
    }
  })

/**
 * `NodeHttpServer.make` insists on calling `listen()` itself, but the server
 * already listens on the socket the registry chose; so that one call only
 * reports success. A server adopted on a unix socket cannot tell its own
 * path, which the platform reads as its address.
 */
const reportListening = (server: Http.Server, listen: Fds.ListenOptions): void => {
  const self = server as unknown as Record<string, unknown>
  self.listen = (...args: ReadonlyArray<unknown>) => {
    delete self.listen
    const callback = args.find((arg) => typeof arg === "function") as (() => void) | undefined
    if (callback !== undefined) process.nextTick(callback)
    return server
  }
  if (server.address() === null && listen.path !== undefined) {
    const path = listen.path
    self.address = () => path
  }
}
