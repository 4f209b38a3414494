/**
 * `@effect/platform`'s `HttpServer` on a listener from the registry: the
 * socket the previous generation passed, or a new one. `HttpRouter`,
 * `HttpApi` and WebSockets work on it unchanged, and it drains (see `Drain`)
 * before its handlers are detached, when the serving scope closes.
 *
 * ```ts
 * const HttpLive = HttpRouter.empty.pipe(
 *   HttpRouter.get("/", HttpServerResponse.text("hello")),
 *   HttpServer.serve(),
 *   Layer.provide(TableflipHttp.layer({ host: "127.0.0.1", port: 8080 }))
 * )
 * // The program's entry point runs it: NodeRuntime.runMain(program)
 * export const program = Upgrader.launch(HttpLive).pipe(Effect.provide(UpgraderLive))
 * ```
 *
 * @since 0.1.0
 */
import type * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import type * as Etag from "@effect/platform/Etag"
import type * as HttpPlatform from "@effect/platform/HttpPlatform"
import * as PlatformHttpServer from "@effect/platform/HttpServer"
import type * as ServeError from "@effect/platform/HttpServerError"
import * as Effect from "effect/Effect"
import type { LazyArg } from "effect/Function"
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
   * Warm the app up (see `Warmup`) right after `HttpServer.serve` attaches
   * it, before the layer is built and so before `Upgrader.launch` calls
   * `ready`. Default: no warm-up. `{}` sends 64 `GET /`.
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
): Effect.Effect<PlatformHttpServer.HttpServer, ListenError | ServeError.ServeError, Fds.Fds | Scope.Scope> =>
  Effect.gen(function*() {
    const { server, serving } = yield* Adopt.listen(listen, options)
    const inner = yield* NodeHttpServer.make(() => server, {})
    return PlatformHttpServer.make({
      address: inner.address,
      serve: (app, middleware) => serving(middleware === undefined ? inner.serve(app) : inner.serve(app, middleware))
    })
  })

/**
 * The platform's `HttpServer`, with `HttpPlatform`, `Etag.Generator` and
 * `NodeContext`, on a registry listener.
 *
 * @example
 * ```ts
 * import * as HttpRouter from "@effect/platform/HttpRouter"
 * import * as HttpServer from "@effect/platform/HttpServer"
 * import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
 * import * as TableflipHttp from "effect-tableflip/HttpServer"
 * import * as Upgrader from "effect-tableflip/Upgrader"
 * import * as Effect from "effect/Effect"
 * import * as Layer from "effect/Layer"
 *
 * const HttpLive = HttpRouter.empty.pipe(
 *   HttpRouter.get("/", Effect.succeed(HttpServerResponse.text("hello\n"))),
 *   HttpServer.serve(),
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
  PlatformHttpServer.HttpServer | HttpPlatform.HttpPlatform | Etag.Generator | NodeContext.NodeContext,
  ListenError | ServeError.ServeError,
  Fds.Fds
> =>
  Layer.scoped(PlatformHttpServer.HttpServer, make(listen, options)).pipe(
    Layer.provideMerge(NodeHttpServer.layerContext)
  )
