/** `platform.ts` on Effect 4 (`effect/http`): see there. */
import * as Effect from "effect/Effect"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Layer from "effect/Layer"

/** `GET path` answers the text its effect gives; `GET /ws` is a WebSocket echo. */
export const serveRoutes = (routes: Record<string, Effect.Effect<string>>) =>
  HttpRouter.serve(
    Layer.mergeAll(
      HttpRouter.add("GET", "/ws", echo),
      ...Object.entries(routes).map(([path, body]) =>
        HttpRouter.add("GET", path as HttpRouter.PathInput, Effect.map(body, (b) => HttpServerResponse.text(b)))
      )
    ),
    { disableLogger: true, disableListenLog: true }
  )

const echo = Effect.gen(function*() {
  const request = yield* HttpServerRequest.HttpServerRequest
  const socket = yield* request.upgrade
  const { pull } = yield* socket.reader
  const { writeAll } = yield* socket.writer
  return yield* Effect.forever(Effect.flatMap(pull, writeAll))
}).pipe(
  Effect.scoped,
  // Every end of the socket, a clean close included, fails the pull with a SocketError.
  Effect.catchTag("SocketError", () => Effect.void),
  Effect.as(HttpServerResponse.empty())
)
