/**
 * Start-up probe: the same server as an Effect app written with layers, as
 * real apps are: the server is a scoped service, a second layer is merged
 * beside it, and the app logs one line when it serves. Without
 * effect-tableflip: the baseline for what the library adds to such an app
 * (an app that uses the library builds layers, so Effect's first layer build
 * is paid whoever's layer it is).
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Http from "node:http"
import { report } from "./report.js"

class Server extends Context.Service<Server, Http.Server>()("probe/Server") {}
class Clock extends Context.Service<Clock, { readonly now: () => number }>()("probe/Clock") {}

const ServerLive = Layer.effect(
  Server,
  Effect.acquireRelease(
    Effect.callback<Http.Server>((resume) => {
      const server = Http.createServer((_request, response) => response.end("ok"))
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
    }),
    (server) => Effect.sync(() => void server.close())
  )
)
const ClockLive = Layer.succeed(Clock, { now: () => Date.now() })

const main = Effect.gen(function*() {
  yield* Server
  yield* Effect.log("serving")
  report()
})

main.pipe(Effect.scoped, Effect.provide(ClockLive.pipe(Layer.provideMerge(ServerLive))), NodeRuntime.runMain)
