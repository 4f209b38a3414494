/**
 * The native addon (native/tableflip.c), shipped prebuilt for linux-x64 and built
 * elsewhere by `npx effect-tableflip build-native`. Loaded on first use, and only by what needs it.
 *
 * @internal
 */
import * as Fs from "node:fs"
import { fileURLToPath } from "node:url"

/**
 * Every call returns at once: sockets are non-blocking, and the one wait (`waitReadable`) runs on a
 * worker thread. A wrong argument throws a TypeError or RangeError naming the call; a failed
 * system call throws an Error whose `code` is the errno's name.
 *
 * @internal
 */
export interface Addon {
  /** Sends one datagram to a unix socket without waiting (a full queue is EAGAIN); a path starting with `@` is abstract. */
  readonly notify: (path: string, message: string) => void
  /** waitpid(pid, WNOHANG) for a process libuv did not spawn; `null` while it runs. */
  readonly reap: (pid: number) => { readonly code: number | null; readonly signal: number | null } | null
  /**
   * One sendmsg, without waiting, of `data` with `fds` (at most 253) as SCM_RIGHTS on a connected
   * unix stream socket: the bytes sent, perhaps fewer than `data` holds (the fds went with the first).
   */
  readonly sendFds: (socket: number, fds: ReadonlyArray<number>, data: Uint8Array | string) => number
  /**
   * One recvmsg of at most `maxBytes`, without waiting: `null` when there is nothing to read yet, an
   * empty `data` at the end of the stream. The fds arrive close-on-exec; `truncated` means some were dropped.
   */
  readonly recvFds: (
    socket: number,
    maxBytes: number
  ) => { readonly fds: ReadonlyArray<number>; readonly data: Buffer; readonly truncated: boolean } | null
  /** Waits on a worker thread up to `timeoutMs` (at most 1000) for `socket` to be readable; `false` if not yet. */
  readonly waitReadable: (socket: number, timeoutMs: number) => Promise<boolean>
  /** SO_PEERCRED: who is at the other end of a unix socket. */
  readonly peerCred: (socket: number) => { readonly pid: number; readonly uid: number; readonly gid: number }
  /** flock(LOCK_EX | LOCK_NB) on a file it creates (0600): the fd holding the lock, or null if taken. */
  readonly lock: (path: string) => number | null
  /** A non-blocking, close-on-exec unix stream socket connected to `path`; a full queue is EAGAIN. */
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
    // node:module is taken at first use: most generations never load the addon before `ready`.
    loaded = {
      addon: process.getBuiltinModule("node:module").createRequire(import.meta.url)(file) as Addon,
      reason: ""
    }
  } catch (error) {
    const missing = !Fs.existsSync(file)
    loaded = {
      addon: undefined,
      reason: missing
        ? `the native addon is not built for ${process.platform}-${process.arch} (${file} is missing); ` +
          "`npx effect-tableflip build-native` builds it where a C compiler is installed" +
          // A bundle or a snapshot has no package root to look in.
          (process.env.EFFECT_TABLEFLIP_ADDON === undefined
            ? ", and EFFECT_TABLEFLIP_ADDON names it when the app runs as a bundle or a snapshot"
            : "")
        : `the native addon ${file} could not be loaded (${(error as Error).message.split("\n")[0]}); ` +
          "`npx effect-tableflip build-native` rebuilds it where a C compiler is installed"
    }
  }
  return loaded
}
