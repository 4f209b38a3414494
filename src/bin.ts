/**
 * The `effect-tableflip` executable: see `Cli`.
 *
 * Not run through `NodeRuntime.runMain`, which interrupts the program on
 * SIGINT and SIGTERM: the runner handles those itself (it stops the app and
 * waits for it), and exits with the app's exit code.
 *
 * @since 0.2.0
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Cli from "./Cli.js"
import * as Fx from "./internal/fx.js"

void Effect.runPromiseExit(Cli.main(process.argv)).then((exit) => {
  if (Exit.isSuccess(exit)) process.exit(exit.value)
  // Anything that gets here is a bug worth its trace.
  if (!Fx.isInterruptedOnly(exit.cause)) process.stderr.write(`${Cause.pretty(exit.cause)}\n`)
  process.exit(1)
})
