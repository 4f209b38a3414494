/**
 * The native addon (native/tableflip.c), built by `npm install` when a
 * compiler is there. Loaded on first use, and only by what needs it.
 *
 * @internal
 */
import * as Fs from "node:fs"
import { createRequire } from "node:module"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

/** @internal */
export interface Addon {
  /** Sends one datagram to a unix socket; a path starting with `@` is abstract. Throws an errno error. */
  readonly notify: (path: string, message: string) => void
  /** waitpid(pid, WNOHANG) for a process libuv did not spawn; `null` while it runs. */
  readonly reap: (pid: number) => { readonly code: number | null; readonly signal: number | null } | null
}

let loaded: { readonly addon: Addon | undefined; readonly reason: string } | undefined

/** The addon, or why it is not there. */
export const load = (): { readonly addon: Addon | undefined; readonly reason: string } => {
  if (loaded !== undefined) return loaded
  // The package root is the nearest directory up from here with binding.gyp (src/ or dist/src/ below it).
  let dir = Path.dirname(fileURLToPath(import.meta.url))
  while (!Fs.existsSync(Path.join(dir, "binding.gyp")) && Path.dirname(dir) !== dir) dir = Path.dirname(dir)
  const file = Path.join(dir, "build", "Release", "tableflip.node")
  try {
    loaded = { addon: createRequire(import.meta.url)(file) as Addon, reason: "" }
  } catch (error) {
    loaded = {
      addon: undefined,
      reason: `the native addon ${file} could not be loaded (${(error as Error).message.split("\n")[0]}); ` +
        "`npm rebuild effect-tableflip` builds it where a C compiler is installed"
    }
  }
  return loaded
}
