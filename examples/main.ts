/**
 * How the examples run their program: `NodeRuntime.runMain`, with one JSON object a line when asked.
 * Effect 4's sibling (main.effect4.ts) differs only in the logger's name and the exit code of a drain
 * after SIGTERM.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"

/** Runs `program` as the process's main fiber; SIGTERM and SIGINT interrupt it, and it exits 0 once drained. */
export const runMain = <E, A>(program: Effect.Effect<A, E>, options: { readonly json?: boolean } = {}): void =>
  NodeRuntime.runMain(program.pipe(Effect.provide(options.json ? Logger.json : Layer.empty)), {
    // runMain's pretty logger would print beside the JSON one.
    disablePrettyLogger: options.json === true
  })
