/**
 * The handover protocol between two generations.
 *
 * A parent starts the next generation with:
 * - fds 0-2 inherited as they are (both generations log to the same place);
 * - fd 3: a Node IPC channel. Over it the parent sends every socket (listeners,
 *   packet sockets, connections) as a handle, one message per socket:
 *   `{ tableflip: "descriptor", key }`. The child answers `{ tableflip: "ready" }`.
 *   The parent keeps the channel open until it exits, so its disconnect tells
 *   the child that the previous generation is gone;
 * - fds 4..16: files, pipes and FIFOs, by inheritance, in manifest order;
 * - the environment variable `EFFECT_TABLEFLIP_HANDOVER`: the manifest, a
 *   versioned JSON document naming every descriptor.
 *
 * Every message on the channel is typed and checked in `channel.ts`.
 *
 * Sockets travel as handles because the kernel delivers them close-on-exec:
 * any number of them stays out of the processes the application spawns.
 * Inherited fds get that only from Node's start-up, which marks fds 0-16
 * close-on-exec, so files are limited to 4..16. The child removes the
 * variable from its environment as it reads it, for the same reason.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Fs from "node:fs"
import { HandoverError } from "../UpgradeError.js"
import * as Fx from "./fx.js"
import { boolean, check, int, list, MAX_PID, Mismatch, object, oneOf, optional, string } from "./shape.js"

/** @internal */
export const ENV = "EFFECT_TABLEFLIP_HANDOVER"
/** @internal */
export const VERSION = 1
/** @internal */
export const CHANNEL_FD = 3
/** @internal */
export const FIRST_FD = 4
/** @internal */
export const LAST_FD = 16
/** @internal */
export const MAX_FILES = LAST_FD - FIRST_FD + 1

/**
 * How long a new generation waits for its handover when the manifest names no
 * upgrade timeout: the default upgrade timeout.
 *
 * @internal
 */
export const HANDOVER_TIMEOUT = Duration.minutes(1)

/**
 * The manifest field for an upgrade timeout: finite ones only.
 *
 * @internal
 */
export const upgradeTimeoutField = (timeout: Duration.Duration): { readonly upgradeTimeoutMillis?: number } =>
  Duration.isFinite(timeout) ? { upgradeTimeoutMillis: Duration.toMillis(timeout) } : {}

/** A listening TCP socket. */
export interface TcpListener {
  readonly kind: "tcp"
  readonly key: string
  readonly address: string
  readonly port: number
  readonly family: "IPv4" | "IPv6"
}

/** A listening unix stream socket; `inode` is the socket file the parent bound, if it bound one. */
export interface UnixListener {
  readonly kind: "unix"
  readonly key: string
  readonly path: string
  readonly inode?: string | undefined
}

/** A bound UDP socket. */
export interface Udp {
  readonly kind: "udp"
  readonly key: string
  readonly type: "udp4" | "udp6"
  readonly address: string
  readonly port: number
}

/** A connected socket (`addConn`). */
export interface Conn {
  readonly kind: "conn"
  readonly key: string
}

/** A file, pipe or FIFO inherited at `fd` (4..16). */
export interface File {
  readonly kind: "file"
  readonly key: string
  readonly fd: number
}

export type Descriptor = TcpListener | UnixListener | Udp | Conn | File

export type SocketDescriptor = Exclude<Descriptor, { readonly kind: "file" }>

/** The versioned manifest in `EFFECT_TABLEFLIP_HANDOVER`. */
export interface Manifest {
  readonly version: typeof VERSION
  readonly generation: number
  readonly parentPid: number
  readonly cwd: string
  readonly fds: ReadonlyArray<Descriptor>
  /**
   * The parent is a runner (`effect-tableflip run`): it keeps the sockets and
   * starts every generation, so this one hands its listeners up at `ready`,
   * asks the runner to upgrade, and steps down when the runner says so.
   */
  readonly supervisor?: boolean | undefined
  /** A `state` message follows the sockets. */
  readonly state?: boolean | undefined
  /** Under a runner: the generation this one follows, if any. */
  readonly predecessorPid?: number | undefined
  /**
   * How long the parent waits for this generation to be ready, in
   * milliseconds (absent when it waits for ever). The new generation waits
   * no longer than that for its handover; without it, `HANDOVER_TIMEOUT`.
   */
  readonly upgradeTimeoutMillis?: number | undefined
  /**
   * A prepared generation: it loads its code and builds what it can, says
   * `parked`, and waits for `go`, whose manifest replaces this one (the
   * sockets and state to expect are known only at the upgrade). Its files
   * are inherited at spawn, so this manifest already names them, and the
   * parent sends `go` only while they are still the same.
   */
  readonly prepared?: boolean | undefined
}

// The manifest is checked by hand (`shape.ts`), not with `effect/Schema`: every generation reads it
// before `ready`, and Schema's module graph costs more start-up than the rest of the library together.
export { check, fields, integer, list, oneOf, pid, string } from "./shape.js"

/** A listener (TCP or unix) and nothing else, as a directory handover sends them. */
export const listener = (value: unknown, path: string): TcpListener | UnixListener => {
  const decoded = descriptor(value, path)
  if (decoded.kind !== "tcp" && decoded.kind !== "unix") {
    throw new Mismatch(`${path}.kind`, "\"tcp\" or \"unix\"", decoded.kind)
  }
  return decoded
}

/** One descriptor of a manifest (or of a directory handover's offer); a mismatch throws, for `check`. */
export const descriptor = (value: unknown, path: string): Descriptor => {
  const from = object(value, path)
  const kind = oneOf(from.kind, `${path}.kind`, ["tcp", "unix", "udp", "conn", "file"])
  const key = string(from.key, `${path}.key`)
  switch (kind) {
    case "tcp":
      return {
        kind,
        key,
        address: string(from.address, `${path}.address`),
        port: int(from.port, `${path}.port`, 0, 65535),
        family: oneOf(from.family, `${path}.family`, ["IPv4", "IPv6"])
      }
    case "unix":
      return { kind, key, path: string(from.path, `${path}.path`), ...optional(from, "inode", path, string) }
    case "udp":
      return {
        kind,
        key,
        type: oneOf(from.type, `${path}.type`, ["udp4", "udp6"]),
        address: string(from.address, `${path}.address`),
        port: int(from.port, `${path}.port`, 0, 65535)
      }
    case "conn":
      return { kind, key }
    case "file":
      return { kind, key, fd: int(from.fd, `${path}.fd`, FIRST_FD, LAST_FD) }
  }
}

/** A manifest's shape, as JSON gave it: the pure part of `decode`. */
export const manifestOf = (value: unknown): Manifest => {
  const from = object(value, "")
  return {
    version: int(from.version, "version", VERSION, VERSION) as typeof VERSION,
    generation: int(from.generation, "generation", 1, Number.MAX_SAFE_INTEGER),
    parentPid: int(from.parentPid, "parentPid", 1, MAX_PID),
    cwd: string(from.cwd, "cwd"),
    fds: list(from.fds, "fds", descriptor),
    ...optional(from, "supervisor", "", boolean),
    ...optional(from, "state", "", boolean),
    ...optional(from, "predecessorPid", "", (v, p) => int(v, p, 1, MAX_PID)),
    ...optional(from, "upgradeTimeoutMillis", "", (v, p) => {
      if (typeof v !== "number" || !Number.isFinite(v) || v < 0) throw new Mismatch(p, "a finite number >= 0", v)
      return v
    }),
    ...optional(from, "prepared", "", boolean)
  }
}

/**
 * What a runner answers to `upgrade` or `prepare` (the messages themselves
 * are typed and checked in `channel.ts`).
 */
export type UpgradeResult =
  | { readonly _tag: "Upgraded"; readonly pid: number }
  | { readonly _tag: "Failed"; readonly error: { readonly _tag: string } & Record<string, unknown> }

/** @internal */
export const encode = (manifest: Manifest): string => JSON.stringify(manifest)

/**
 * Parses and checks a manifest, including that every fd it names is open and
 * is a socket.
 *
 * @internal
 */
export const decode = (text: string): Fx.Result<Manifest, HandoverError> => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (error) {
    return Fx.fail(
      new HandoverError({ reason: "Malformed", detail: `${ENV} is not JSON: ${(error as Error).message}` })
    )
  }
  return validate(json, ENV)
}

/**
 * Checks a manifest that arrived as JSON (`source` names where: the
 * environment, or a `go` message): its version and shape, that no key or fd
 * is named twice, and that every fd it names is open.
 *
 * @internal
 */
export const validate = (json: unknown, source: string): Fx.Result<Manifest, HandoverError> => {
  const version = typeof json === "object" && json !== null ? (json as { version?: unknown }).version : undefined
  if (version !== VERSION) {
    return Fx.fail(
      new HandoverError({
        reason: "Version",
        detail: `${source} has protocol version ${JSON.stringify(version)}, this build speaks ${VERSION}; ` +
          "the previous generation runs an incompatible effect-tableflip"
      })
    )
  }
  const decoded = check(json, manifestOf)
  if (Fx.isFailure(decoded)) return malformed(`${source} does not match the manifest schema: ${Fx.failureOf(decoded)}`)
  const keys = new Set<string>()
  const fds = new Set<number>()
  const manifest = Fx.successOf(decoded)
  for (const descriptor of manifest.fds) {
    if (keys.has(descriptor.key)) return malformed(`descriptor ${descriptor.key} is named twice`)
    keys.add(descriptor.key)
    if (descriptor.kind !== "file") continue
    if (fds.has(descriptor.fd)) return malformed(`fd ${descriptor.fd} is named twice`)
    fds.add(descriptor.fd)
    const problem = checkOpen(descriptor.fd)
    if (problem !== undefined) return Fx.fail(problem)
  }
  return Fx.succeed(manifest)
}

const malformed = (detail: string): Fx.Result<never, HandoverError> =>
  Fx.fail(new HandoverError({ reason: "Malformed", detail }))

const checkOpen = (fd: number): HandoverError | undefined => {
  try {
    Fs.fstatSync(fd)
    return undefined
  } catch (error) {
    return new HandoverError({
      reason: "MissingFd",
      detail: `fd ${fd} is named in ${ENV} but is not open (${(error as NodeJS.ErrnoException).code}); ` +
        "was this process started by hand with a copied environment?"
    })
  }
}

/**
 * Reads the manifest from the environment and removes it there, so that the
 * application's own child processes never see it.
 *
 * @internal
 */
export const take = (env: NodeJS.ProcessEnv = process.env): Fx.Result<Manifest, HandoverError> | undefined => {
  const text = env[ENV]
  if (text === undefined) return undefined
  delete env[ENV]
  const decoded = decode(text)
  if (Fx.isSuccess(decoded) && process.channel === undefined) {
    return Fx.fail(
      new HandoverError({
        reason: "MissingFd",
        detail: `${ENV} is set but there is no IPC channel to a previous generation at fd ${CHANNEL_FD}; ` +
          "was this process started by hand with a copied environment?"
      })
    )
  }
  return decoded
}
