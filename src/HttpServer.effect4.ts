/**
 * Effect 4's `HttpServer` (`effect/http`) on a listener from the registry:
 * the socket the previous generation passed, or a new one. `HttpRouter`,
 * `HttpApi` and WebSockets work on it unchanged, and it drains (see `Drain`)
 * before its handlers are detached, when the serving scope closes.
 *
 * ```ts
 * const HttpLive = HttpRouter.serve(HttpRouter.add("GET", "/", HttpServerResponse.text("hello"))).pipe(
 *   Layer.provide(TableflipHttp.layer({ host: "127.0.0.1", port: 8080 }))
 * )
 * // The program's entry point runs it: NodeRuntime.runMain(program)
 * export const program = Upgrader.launch(HttpLive).pipe(Effect.provide(UpgraderLive))
 * ```
 *
 * @since 0.1.0
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import type * as NodeServices from "@effect/platform-node/NodeServices"
import * as Effect from "effect/Effect"
import type { LazyArg } from "effect/Function"
import type * as Etag from "effect/http/Etag"
import type * as HttpPlatform from "effect/http/HttpPlatform"
import * as PlatformHttpServer from "effect/http/HttpServer"
import type * as ServeError from "effect/http/HttpServerError"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type * as Http from "node:http"
import type * as Drain from "./Drain.js"
import type * as Fds from "./Fds.js"
import * as Adopt from "./internal/http/adopt.js"
import type { ListenError } from "./UpgradeError.js"
import type * as Warmup from "./Warmup.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options extends Drain.Options {
  /** The `http.Server` to serve with. Default: `http.createServer()`. */
  readonly server?: LazyArg<Http.Server> | undefined
  /**
   * Warm the app up (see `Warmup`) right after `HttpRouter.serve` (or
   * `HttpServer.serve`) attaches it, before the layer is built and so before
   * `Upgrader.launch` calls `ready`. Default: no warm-up. `{}` sends 64 `GET /`.
   */
  readonly warmup?: Warmup.Options | undefined
}

/**
 * Listens through the registry and builds the platform's `HttpServer` on it.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  listen: Fds.ListenOptions,
  options: Options = {}
): Effect.Effect<
  PlatformHttpServer.HttpServer["Service"],
  ListenError | ServeError.ServeError,
  Fds.Fds | Scope.Scope
> =>
  Effect.gen(function*() {
    const { server, serving } = yield* Adopt.listen(listen, options)
    // The drain (which runs first) is the graceful shutdown, bounded by its own deadline; the
    // platform's would be a second one, with its own 20 s timeout.
    const inner = yield* NodeHttpServer.make(() => server, { disablePreemptiveShutdown: true })
    return PlatformHttpServer.make({
      address: inner.address,
      serve: (app, middleware) => serving(middleware === undefined ? inner.serve(app) : inner.serve(app, middleware))
    })
  })

/**
 * The platform's `HttpServer`, with `HttpPlatform`, `Etag.Generator` and
 * `NodeServices`, on a registry listener.
 *
 * @example
 * ```ts
 * import * as HttpRouter from "effect/http/HttpRouter"
 * import * as HttpServerResponse from "effect/http/HttpServerResponse"
 * import * as TableflipHttp from "effect-tableflip/HttpServer"
 * import * as Upgrader from "effect-tableflip/Upgrader"
 * import * as Effect from "effect/Effect"
 * import * as Layer from "effect/Layer"
 *
 * const HttpLive = HttpRouter.serve(HttpRouter.add("GET", "/", HttpServerResponse.text("hello\n"))).pipe(
 *   Layer.provide(TableflipHttp.layer({ host: "127.0.0.1", port: 8080 }, { deadline: "30 seconds" }))
 * )
 *
 * const UpgraderLive = Upgrader.layerSignal().pipe(Layer.provideMerge(Upgrader.layerConfig()))
 *
 * // The program's entry point runs it: NodeRuntime.runMain(program)
 * export const program = Upgrader.launch(HttpLive).pipe(Effect.provide(UpgraderLive))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  listen: Fds.ListenOptions,
  options: Options = {}
): Layer.Layer<
  PlatformHttpServer.HttpServer | HttpPlatform.HttpPlatform | Etag.Generator | NodeServices.NodeServices,
  ListenError | ServeError.ServeError,
  Fds.Fds
> =>
  Layer.effect(PlatformHttpServer.HttpServer, make(listen, options)).pipe(
    Layer.provideMerge(NodeHttpServer.layerHttpServices)
  )
