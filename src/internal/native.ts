/**
 * The native addon (native/tableflip.c), built by `npm install` when a
 * compiler is there. Loaded on first use, and only by what needs it.
 *
 * @internal
 */
import * as Fs from "node:fs"
import { createRequire } from "node:module"
import { fileURLToPath } from "node:url"

/** @internal */
export interface Addon {
  /** Sends one datagram to a unix socket; a path starting with `@` is abstract. Throws an errno error. */
  readonly notify: (path: string, message: string) => void
  /** waitpid(pid, WNOHANG) for a process libuv did not spawn; `null` while it runs. */
  readonly reap: (pid: number) => { readonly code: number | null; readonly signal: number | null } | null
  /** One sendmsg of `data` with `fds` as SCM_RIGHTS on a connected unix stream socket. */
  readonly sendFds: (socket: number, fds: ReadonlyArray<number>, data: string) => void
  /** Waits up to `timeoutMs` for one message; the fds arrive close-on-exec. Blocks the thread. */
  readonly recvFds: (
    socket: number,
    timeoutMs: number
  ) => { readonly fds: ReadonlyArray<number>; readonly data: string; readonly truncated: boolean }
  /** SO_PEERCRED: who is at the other end of a unix socket. */
  readonly peerCred: (socket: number) => { readonly pid: number; readonly uid: number; readonly gid: number }
  /** flock(LOCK_EX | LOCK_NB) on a file it creates (0600): the fd holding the lock, or null if taken. */
  readonly lock: (path: string) => number | null
  /** A blocking, close-on-exec unix stream socket connected to `path`. */
  readonly connect: (path: string) => number
  /** Whether an fd of this process is a listening socket, and where: `null` if it is not. */
  readonly listening: (fd: number) =>
    | { readonly family: "IPv4" | "IPv6"; readonly address: string; readonly port: number }
    | { readonly family: "unix"; readonly path: string }
    | { readonly family: "other" }
    | null
}

let loaded: { readonly addon: Addon | undefined; readonly reason: string } | undefined

/**
 * Where the addon is looked for: `EFFECT_TABLEFLIP_ADDON` if set (a bundle or a snapshot that
 * moved the file), else `prebuilds/<platform>-<arch>/tableflip.node` in the package root, two
 * levels above this module in both `src/internal/` and `dist/internal/`.
 */
export const path = (): string =>
  process.env.EFFECT_TABLEFLIP_ADDON ??
    fileURLToPath(new URL(`../../prebuilds/${process.platform}-${process.arch}/tableflip.node`, import.meta.url))

/** The addon, or why it is not there (a sentence naming the command that builds it). */
export const load = (): { readonly addon: Addon | undefined; readonly reason: string } => {
  if (loaded !== undefined) return loaded
  if (process.env.EFFECT_TABLEFLIP_NATIVE === "0") {
    loaded = { addon: undefined, reason: "the native addon is disabled (EFFECT_TABLEFLIP_NATIVE=0)" }
    return loaded
  }
  const file = path()
  try {
    loaded = { addon: createRequire(import.meta.url)(file) as Addon, reason: "" }
  } catch (error) {
    const missing = !Fs.existsSync(file)
    loaded = {
      addon: undefined,
      reason: missing
        ? `the native addon is not built for ${process.platform}-${process.arch} (${file} is missing); ` +
          "`npx effect-tableflip build-native` builds it where a C compiler is installed"
        : `the native addon ${file} could not be loaded (${(error as Error).message.split("\n")[0]}); ` +
          "`npx effect-tableflip build-native` rebuilds it where a C compiler is installed"
    }
  }
  return loaded
}
