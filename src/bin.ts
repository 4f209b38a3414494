/**
 * The `effect-tableflip` executable: see `Cli`.
 *
 * Not run through `NodeRuntime.runMain`, which interrupts the program on
 * SIGINT and SIGTERM: the runner handles those itself (it stops the app and
 * waits for it), and exits with the app's exit code.
 *
 * @since 0.2.0
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Cli from "./Cli.js"

void Effect.runPromiseExit(Cli.main(process.argv).pipe(Effect.scoped, Effect.provide(NodeContext.layer))).then(
  (exit) => {
    if (Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause)) {
      // @effect/cli has printed a usage error already; anything else is a bug worth its trace.
      if (!Cause.isFailType(exit.cause)) process.stderr.write(`${Cause.pretty(exit.cause)}\n`)
      process.exit(Cli.exitCode.current === 0 ? 1 : Cli.exitCode.current)
    }
    process.exit(Cli.exitCode.current)
  }
)
