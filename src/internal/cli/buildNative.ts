/**
 * `effect-tableflip build-native`: runs the package's build script for the
 * native addon with this Node.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as ChildProcess from "node:child_process"
import { fileURLToPath } from "node:url"
import { parseOptions, say } from "./parse.js"
import { commandHelp, COMMANDS } from "./spec.js"

/** `effect-tableflip build-native`: builds the native addon for this platform. */
export const buildNative = (args: ReadonlyArray<string>) =>
  Effect.suspend(() => {
    if (parseOptions("build-native", args, false).help) return say(0, commandHelp(COMMANDS["build-native"]))
    // The script sits three levels above this module, in src/ and dist/ alike.
    const script = fileURLToPath(new URL("../../../scripts/build-native.mjs", import.meta.url))
    const result = ChildProcess.spawnSync(process.execPath, [script], { stdio: "inherit" })
    return Effect.succeed(result.status ?? 1)
  })
