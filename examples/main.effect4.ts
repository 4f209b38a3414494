/**
 * How the examples run their program on Effect 4: `NodeRuntime.runMain`, with one JSON object a line
 * when asked.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Runtime from "effect/Runtime"

/** Runs `program` as the process's main fiber; SIGTERM and SIGINT interrupt it, and it exits 0 once drained. */
export const runMain = <E, A>(program: Effect.Effect<A, E>, options: { readonly json?: boolean } = {}): void =>
  NodeRuntime.runMain(program.pipe(Effect.provide(options.json ? Logger.layer([Logger.consoleJson]) : Layer.empty)), {
    // Effect 4 exits 130 when the signal interrupted the program; a drain that finished is a clean exit.
    teardown: (exit, onExit) =>
      Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause) ? onExit(0) : Runtime.defaultTeardown(exit, onExit)
  })
