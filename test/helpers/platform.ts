/**
 * The platform's HTTP app for tests of `HttpServer`, on Effect 3 (`@effect/platform`);
 * `platform.effect4.ts` is the same on Effect 4 (`effect/http`). The tests themselves are shared.
 */
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"

/** `GET path` answers the text its effect gives; `GET /ws` is a WebSocket echo. */
export const serveRoutes = (routes: Record<string, Effect.Effect<string>>) =>
  Object.entries(routes).reduce(
    (router, [path, body]) => HttpRouter.get(router, path as HttpRouter.PathInput, Effect.map(body, text)),
    HttpRouter.empty.pipe(HttpRouter.get("/ws", echo))
  ).pipe(HttpServer.serve())

const text = (body: string) => HttpServerResponse.text(body)

const echo = Effect.gen(function*() {
  const socket = yield* HttpServerRequest.upgrade
  const write = yield* socket.writer
  yield* socket.runRaw((message) => write(message))
  return HttpServerResponse.empty()
}).pipe(Effect.scoped)
