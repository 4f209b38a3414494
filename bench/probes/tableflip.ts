/** Start-up probe: the same server with effect-tableflip, up to `ready`. */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Drain from "effect-tableflip/Drain"
import * as Fds from "effect-tableflip/Fds"
import * as Upgrader from "effect-tableflip/Upgrader"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Http from "node:http"
import { report } from "./report.js"

const main = Effect.gen(function*() {
  const upgrader = yield* Upgrader.Upgrader
  const server = yield* Fds.listen(
    { host: "127.0.0.1", port: 0 },
    Http.createServer((_request, response) => response.end("ok"))
  )
  yield* Drain.http(server)
  yield* upgrader.ready
  report()
})

const UpgraderLive = Upgrader.layerSignal().pipe(Layer.provideMerge(Upgrader.layer()))

main.pipe(Effect.scoped, Effect.provide(UpgraderLive), NodeRuntime.runMain)
