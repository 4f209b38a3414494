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
 * Sockets travel as handles because the kernel delivers them close-on-exec:
 * any number of them stays out of the processes the application spawns.
 * Inherited fds get that only from Node's start-up, which marks fds 0-16
 * close-on-exec, so files are limited to 4..16. The child removes the
 * variable from its environment as it reads it, for the same reason.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as Fs from "node:fs"
import { HandoverError } from "../UpgradeError.js"

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

const Fd = Schema.Int.pipe(Schema.between(FIRST_FD, LAST_FD))
const Port = Schema.Int.pipe(Schema.between(0, 65535))

/** @internal */
export const TcpListener = Schema.Struct({
  kind: Schema.Literal("tcp"),
  key: Schema.String,
  address: Schema.String,
  port: Port,
  family: Schema.Literal("IPv4", "IPv6")
})

/** @internal */
export const UnixListener = Schema.Struct({
  kind: Schema.Literal("unix"),
  key: Schema.String,
  path: Schema.String,
  // Identity of the socket file this listener is bound to, so that nobody
  // unlinks a file that another process has since put at the same path.
  inode: Schema.optional(Schema.String)
})

/** @internal */
export const Udp = Schema.Struct({
  kind: Schema.Literal("udp"),
  key: Schema.String,
  type: Schema.Literal("udp4", "udp6"),
  address: Schema.String,
  port: Port
})

/** @internal */
export const Conn = Schema.Struct({
  kind: Schema.Literal("conn"),
  key: Schema.String
})

/** @internal */
export const File = Schema.Struct({
  kind: Schema.Literal("file"),
  key: Schema.String,
  fd: Fd
})

/** @internal */
export const Descriptor = Schema.Union(TcpListener, UnixListener, Udp, Conn, File)
/** @internal */
export type Descriptor = typeof Descriptor.Type
/** @internal */
export type SocketDescriptor = Exclude<Descriptor, { readonly kind: "file" }>

/** @internal */
export const Manifest = Schema.Struct({
  version: Schema.Literal(VERSION),
  generation: Schema.Int.pipe(Schema.positive()),
  parentPid: Schema.Int.pipe(Schema.positive()),
  cwd: Schema.String,
  fds: Schema.Array(Descriptor),
  /**
   * The parent is a runner (`effect-tableflip run`): it keeps the sockets and
   * starts every generation, so this one hands its listeners up at `ready`,
   * asks the runner to upgrade, and steps down when the runner says so.
   */
  supervisor: Schema.optional(Schema.Boolean),
  /** A `state` message follows the sockets. */
  state: Schema.optional(Schema.Boolean),
  /** Under a runner: the generation this one follows, if any. */
  predecessorPid: Schema.optional(Schema.Int.pipe(Schema.positive())),
  /**
   * How long the parent waits for this generation to be ready, in
   * milliseconds (absent when it waits for ever). The new generation waits
   * no longer than that for its handover; without it, `HANDOVER_TIMEOUT`.
   */
  upgradeTimeoutMillis: Schema.optional(Schema.Number.pipe(Schema.finite(), Schema.nonNegative()))
})
/** @internal */
export type Manifest = typeof Manifest.Type

/**
 * A message on the IPC channel that belongs to the protocol.
 *
 * Parent to child: `descriptor` (with a socket handle), then `state`. Child
 * to parent: `ready`, or `unready` (its readiness check failed). With a runner, also child to runner: `descriptor` (with the
 * handle and its `descriptor`, before `ready`) and `upgrade`; runner to child:
 * `upgrade-result`, `exit` (step down: the next generation is ready), `stop`
 * (the service stops) and `predecessor-gone`.
 */
export interface Message {
  readonly tableflip:
    | "descriptor"
    | "state"
    | "ready"
    | "unready"
    | "upgrade"
    | "upgrade-result"
    | "exit"
    | "stop"
    | "predecessor-gone"
  readonly key?: string
  readonly descriptor?: SocketDescriptor
  readonly result?: UpgradeResult
  /** `state`: JSON, one encoded value per key. */
  readonly state?: string
  /** `unready`: why the readiness check failed. */
  readonly reason?: string
}

/** What a runner answers to `upgrade`. */
export type UpgradeResult =
  | { readonly _tag: "Upgraded"; readonly pid: number }
  | { readonly _tag: "Failed"; readonly error: { readonly _tag: string } & Record<string, unknown> }

/** @internal */
export const isMessage = (message: unknown): message is Message =>
  typeof message === "object" && message !== null && typeof (message as Message).tableflip === "string"

const decodeManifest = Schema.decodeUnknownEither(Manifest)
const encodeManifest = Schema.encodeSync(Manifest)

/** @internal */
export const encode = (manifest: Manifest): string => JSON.stringify(encodeManifest(manifest))

/**
 * Parses and checks a manifest, including that every fd it names is open and
 * is a socket.
 *
 * @internal
 */
export const decode = (text: string): Either.Either<Manifest, HandoverError> => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (error) {
    return Either.left(
      new HandoverError({ reason: "Malformed", detail: `${ENV} is not JSON: ${(error as Error).message}` })
    )
  }
  const version = typeof json === "object" && json !== null ? (json as { version?: unknown }).version : undefined
  if (version !== VERSION) {
    return Either.left(
      new HandoverError({
        reason: "Version",
        detail: `${ENV} has protocol version ${JSON.stringify(version)}, this build speaks ${VERSION}; ` +
          "the previous generation runs an incompatible effect-tableflip"
      })
    )
  }
  const decoded = decodeManifest(json, { onExcessProperty: "ignore" })
  if (Either.isLeft(decoded)) {
    return Either.left(
      new HandoverError({
        reason: "Malformed",
        detail: `${ENV} does not match the manifest schema: ${ParseResult.TreeFormatter.formatErrorSync(decoded.left)}`
      })
    )
  }
  const manifest = decoded.right
  const keys = new Set<string>()
  const fds = new Set<number>()
  for (const descriptor of manifest.fds) {
    if (keys.has(descriptor.key)) {
      return Either.left(
        new HandoverError({ reason: "Malformed", detail: `descriptor ${descriptor.key} is named twice` })
      )
    }
    keys.add(descriptor.key)
    if (descriptor.kind !== "file") continue
    if (fds.has(descriptor.fd)) {
      return Either.left(new HandoverError({ reason: "Malformed", detail: `fd ${descriptor.fd} is named twice` }))
    }
    fds.add(descriptor.fd)
    const problem = checkOpen(descriptor.fd)
    if (problem !== undefined) return Either.left(problem)
  }
  return Either.right(manifest)
}

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
export const take = (env: NodeJS.ProcessEnv = process.env): Either.Either<Manifest, HandoverError> | undefined => {
  const text = env[ENV]
  if (text === undefined) return undefined
  delete env[ENV]
  const decoded = decode(text)
  if (Either.isRight(decoded) && process.channel === undefined) {
    return Either.left(
      new HandoverError({
        reason: "MissingFd",
        detail: `${ENV} is set but there is no IPC channel to a previous generation at fd ${CHANNEL_FD}; ` +
          "was this process started by hand with a copied environment?"
      })
    )
  }
  return decoded
}
