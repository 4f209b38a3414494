/** Start-up probe: the same server as a plain Effect app, without effect-tableflip. */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Effect from "effect/Effect"
import * as Http from "node:http"
import { report } from "./report.js"

const main = Effect.gen(function*() {
  const server = Http.createServer((_request, response) => response.end("ok"))
  yield* Effect.promise(() => new Promise<void>((resolve) => void server.listen(0, "127.0.0.1", resolve)))
  report()
})

NodeRuntime.runMain(main)
