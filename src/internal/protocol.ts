/**
 * The handover protocol between two generations.
 *
 * A parent starts the next generation with:
 * - fds 0-2 inherited as they are (both generations log to the same place);
 * - fd 3: the control channel, one end of a socketpair. The child writes
 *   newline-delimited JSON frames to it (`{"type":"ready"}`); the parent
 *   writes nothing and keeps its end open until it exits, so end-of-file on
 *   fd 3 tells the child that the previous generation is gone;
 * - fds 4..16: the registered descriptors, in manifest order.
 * - the environment variable `EFFECT_TABLEFLIP_HANDOVER`: the manifest, a
 *   versioned JSON document naming each descriptor and its fd.
 *
 * Node marks fds 0-16 close-on-exec when it starts, so every fd of the layout
 * stays out of the processes the application spawns. The child removes the
 * variable from its environment as it reads it, for the same reason.
 *
 * @internal
 */
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
export const CONTROL_FD = 3
/** @internal */
export const FIRST_FD = 4
/** @internal */
export const LAST_FD = 16
/** @internal */
export const MAX_DESCRIPTORS = LAST_FD - FIRST_FD + 1

const Fd = Schema.Int.pipe(Schema.between(FIRST_FD, LAST_FD))

/** @internal */
export const TcpListener = Schema.Struct({
  kind: Schema.Literal("tcp"),
  key: Schema.String,
  fd: Fd,
  address: Schema.String,
  port: Schema.Int.pipe(Schema.between(1, 65535)),
  family: Schema.Literal("IPv4", "IPv6")
})

/** @internal */
export const UnixListener = Schema.Struct({
  kind: Schema.Literal("unix"),
  key: Schema.String,
  fd: Fd,
  path: Schema.String,
  // Identity of the socket file this listener is bound to, so that nobody
  // unlinks a file that another process has since put at the same path.
  inode: Schema.optional(Schema.String)
})

/** @internal */
export const Descriptor = Schema.Union(TcpListener, UnixListener)
/** @internal */
export type Descriptor = typeof Descriptor.Type

/** @internal */
export const Manifest = Schema.Struct({
  version: Schema.Literal(VERSION),
  generation: Schema.Int.pipe(Schema.positive()),
  parentPid: Schema.Int.pipe(Schema.positive()),
  cwd: Schema.String,
  control: Schema.Literal(CONTROL_FD),
  fds: Schema.Array(Descriptor)
})
/** @internal */
export type Manifest = typeof Manifest.Type

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
  const seen = new Set<number>()
  for (const fd of [...manifest.fds.map((d) => d.fd), manifest.control]) {
    if (seen.has(fd)) {
      return Either.left(new HandoverError({ reason: "Malformed", detail: `fd ${fd} is named twice` }))
    }
    seen.add(fd)
    const problem = checkSocket(fd)
    if (problem !== undefined) return Either.left(problem)
  }
  return Either.right(manifest)
}

const checkSocket = (fd: number): HandoverError | undefined => {
  let stat: Fs.Stats
  try {
    stat = Fs.fstatSync(fd)
  } catch (error) {
    return new HandoverError({
      reason: "MissingFd",
      detail: `fd ${fd} is named in ${ENV} but is not open (${(error as NodeJS.ErrnoException).code}); ` +
        "was this process started by hand with a copied environment?"
    })
  }
  if (!stat.isSocket()) {
    return new HandoverError({
      reason: "WrongKind",
      detail: `fd ${fd} should be a socket but is ${kindOf(stat)}; ` +
        "was this process started by hand with a copied environment?"
    })
  }
  return undefined
}

const kindOf = (stat: Fs.Stats): string =>
  stat.isFile()
    ? "a regular file"
    : stat.isDirectory()
    ? "a directory"
    : stat.isFIFO()
    ? "a pipe"
    : stat.isCharacterDevice()
    ? "a character device"
    : "some other kind of file"

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
  return decode(text)
}
