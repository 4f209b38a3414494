/**
 * Node socket primitives the registry binds and adopts with: resolving a
 * request to the addresses Node would bind, `listen`/`bind` as effects, the
 * unix socket path dance (bind under a temporary name, rename into place), and
 * closing or unlinking what an earlier generation left.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type * as Dgram from "node:dgram"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import type { ListenOptions } from "../Fds.js"
import { ListenError } from "../UpgradeError.js"
import * as Fx from "./fx.js"
import * as Handles from "./handles.js"
import * as Keys from "./keys.js"
import * as Procfs from "./procfs.js"
import type { Inherited } from "./registry.js"

/** A listener the registry holds, and how to release it. @internal */
export interface ListenEntry {
  readonly key: string
  readonly server: Net.Server
  /** Bound by this process rather than inherited. */
  readonly boundHere: boolean
  readonly path: string | undefined
  readonly inode: string | undefined
}

/** A listen request, resolved: its key, the label errors show, and where to bind. @internal */
export type Request =
  | {
    readonly kind: "tcp"
    readonly key: string
    readonly label: string
    readonly name: string | undefined
    readonly host: string | undefined
    readonly port: number
    /** The addresses a listener for this request could be bound to. */
    readonly addresses: ReadonlyArray<string>
    readonly backlog: number | undefined
    readonly ipv6Only: boolean | undefined
  }
  | {
    readonly kind: "unix"
    readonly key: string
    readonly label: string
    readonly name: string | undefined
    readonly path: string
    readonly backlog: number | undefined
  }

/** Turns `Fds.ListenOptions` into a request; fails on a port out of range or a host that does not resolve. @internal */
export const resolveRequest = (options: ListenOptions): Effect.Effect<Request, ListenError> => {
  const name = options.name
  if (options.path !== undefined) {
    const path = isAbstract(options.path) ? options.path : Path.resolve(options.path)
    const label = Keys.unix(path)
    return Effect.succeed({
      kind: "unix",
      key: Keys.namedOr(name, label),
      label,
      name,
      path,
      backlog: options.backlog
    })
  }
  const port = options.port ?? 0
  const host = options.host
  const label = Keys.tcp(host, port)
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    return Effect.fail(new ListenError({ address: label, reason: "Failed", cause: `port ${port} is out of range` }))
  }
  return Effect.map(candidateAddresses(host, label, undefined), (addresses) => ({
    kind: "tcp" as const,
    key: Keys.namedOr(name, label),
    label,
    name,
    host,
    port,
    addresses,
    backlog: options.backlog,
    ipv6Only: options.ipv6Only
  }))
}

/**
 * Where Node would bind `host`: the same lookup `server.listen` and `socket.bind` perform.
 *
 * @internal
 */
export const candidateAddresses = (
  host: string | undefined,
  label: string,
  type: "udp4" | "udp6" | undefined
): Effect.Effect<ReadonlyArray<string>, ListenError> => {
  if (host === undefined || host === "") {
    return Effect.succeed(type === "udp4" ? ["0.0.0.0"] : type === "udp6" ? ["::"] : ["::", "0.0.0.0"])
  }
  if (Net.isIP(host) !== 0) return Effect.succeed([host])
  return Fx.callback<ReadonlyArray<string>, ListenError>((resume) => {
    const done = (error: Error | null, address: string) =>
      resume(
        error === null
          ? Effect.succeed([address])
          : Effect.fail(new ListenError({ address: label, reason: "Failed", cause: error }))
      )
    // Taken when a listener names a host (not at start-up: most generations inherit their sockets).
    const Dns = process.getBuiltinModule("node:dns")
    if (type === undefined) Dns.lookup(host, done)
    else Dns.lookup(host, type === "udp4" ? 4 : 6, done)
  })
}

/** A bind failure as a `ListenError`; `EADDRINUSE` gets its own reason. @internal */
export const listenError = (label: string, error: unknown) =>
  new ListenError({
    address: label,
    reason: (error as NodeJS.ErrnoException).code === "EADDRINUSE" ? "AddressInUse" : "Failed",
    cause: error
  })

/** `server.listen` as an effect: a handle from the previous generation, `{ fd }`, or address options. @internal */
export const listenOn = (server: Net.Server, options: object, label: string): Effect.Effect<void, ListenError> =>
  Fx.callback<void, ListenError>((resume) => {
    const onError = (error: Error) => {
      server.off("listening", onListening)
      resume(Effect.fail(listenError(label, error)))
    }
    const onListening = () => {
      server.off("error", onError)
      resume(Effect.void)
    }
    server.once("error", onError)
    server.once("listening", onListening)
    try {
      // A handle received from the previous generation, `{ fd }`, or address options.
      server.listen(options as Net.ListenOptions)
    } catch (error) {
      server.off("error", onError)
      server.off("listening", onListening)
      resume(Effect.fail(listenError(label, error)))
    }
  })

/** `socket.bind` as an effect; the socket is closed if binding fails. @internal */
export const bindDgram = (socket: Dgram.Socket, options: Dgram.BindOptions, label: string) =>
  Fx.callback<Dgram.Socket, ListenError>((resume) => {
    const onError = (error: Error) => {
      socket.close()
      resume(Effect.fail(listenError(label, error)))
    }
    socket.once("error", onError)
    socket.bind(options, () => {
      socket.off("error", onError)
      resume(Effect.succeed(socket))
    })
  })

/** Binds a new TCP listener for `request`. @internal */
export const bindTcp = (server: Net.Server, request: Extract<Request, { kind: "tcp" }>) =>
  Effect.gen(function*() {
    yield* listenOn(server, {
      port: request.port,
      ...(request.host === undefined ? {} : { host: request.host }),
      ...(request.backlog === undefined ? {} : { backlog: request.backlog }),
      ...(request.ipv6Only === undefined ? {} : { ipv6Only: request.ipv6Only })
    }, request.label)
    const address = server.address() as Net.AddressInfo
    // A port-0 listener is known to the next generation by the port it got.
    const key = request.name === undefined && request.port === 0 ? Keys.tcp(request.host, address.port) : request.key
    return { key, server, boundHere: true, path: undefined, inode: undefined } satisfies ListenEntry
  })

/**
 * Binds a unix socket without ever unlinking a path another process serves:
 * a live socket at the path is an error; a stale one (nobody accepts) is
 * replaced. The socket is bound under a temporary name and renamed into
 * place, so the path never points at nothing and libuv's unlink-on-close
 * only ever removes the temporary name.
 *
 * @internal
 */
export const bindUnix = (server: Net.Server, request: Extract<Request, { kind: "unix" }>) =>
  Effect.gen(function*() {
    const listenOptions = request.backlog === undefined ? {} : { backlog: request.backlog }
    if (isAbstract(request.path)) {
      yield* listenOn(server, { path: request.path, ...listenOptions }, request.label)
      // No file to unlink, ever: the path is only its name.
      return { key: request.key, server, boundHere: true, path: request.path, inode: undefined } satisfies ListenEntry
    }
    yield* checkUnixPath(request)
    const dir = Path.dirname(request.path)
    const temp = Path.join(dir, `.tf${process.pid.toString(36)}${Math.random().toString(36).slice(2, 8)}`)
    yield* listenOn(server, { path: temp, ...listenOptions }, request.label)
    const inode = yield* Effect.try({
      try: () => {
        Fs.renameSync(temp, request.path)
        return inodeOf(request.path)
      },
      catch: (cause) => new ListenError({ address: request.label, reason: "Failed", cause })
    }).pipe(Effect.tapError(() => Effect.sync(() => server.close())))
    return { key: request.key, server, boundHere: true, path: request.path, inode } satisfies ListenEntry
  })

/** Fails when `request.path` is not a socket, or a live one; a stale socket file is fine. @internal */
export const checkUnixPath = (request: Extract<Request, { kind: "unix" }>): Effect.Effect<void, ListenError> =>
  Effect.suspend(() => {
    let stat: Fs.Stats
    try {
      stat = Fs.lstatSync(request.path)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return Effect.void
      return Effect.fail(new ListenError({ address: request.label, reason: "Failed", cause: error }))
    }
    if (!stat.isSocket()) {
      return Effect.fail(new ListenError({ address: request.label, reason: "NotASocket", cause: undefined }))
    }
    return Fx.callback<void, ListenError>((resume) => {
      const probe = Net.connect({ path: request.path })
      probe.once("connect", () => {
        probe.destroy()
        resume(Effect.fail(
          new ListenError({
            address: request.label,
            reason: "AddressInUse",
            cause: "a process accepts connections there"
          })
        ))
      })
      // ECONNREFUSED: a stale socket file nobody listens on; the rename replaces it.
      probe.once("error", () => resume(Effect.void))
    })
  })

/** A path in Linux's abstract namespace. @internal */
export const isAbstract = (path: string): boolean => path.startsWith("\0")

/** The sockfs inode of an fd, to tell registered sockets from stray ones. @internal */
export const socketInode = (fd: number | undefined): string | undefined =>
  fd === undefined ? undefined : Procfs.socketInode(fd)

/** `dev:ino` of the file at `path`, or `undefined` when there is none. @internal */
export const inodeOf = (path: string): string | undefined => {
  try {
    const stat = Fs.statSync(path, { bigint: true })
    return `${stat.dev}:${stat.ino}`
  } catch {
    return undefined
  }
}

/** Unlinks `path` only while it is still the file this generation (or its predecessor) bound. @internal */
export const unlinkIfSame = (path: string, inode: string | undefined): void => {
  if (inode === undefined || inodeOf(path) !== inode) return
  try {
    Fs.unlinkSync(path)
  } catch {
    // Already gone: nothing to clean.
  }
}

/** Closes an inherited descriptor nobody claimed. @internal */
export const closeInherited = (entry: Inherited): void => {
  if (entry.handle !== undefined) return Handles.closeHandle(entry.handle)
  if (entry.fd === undefined) return
  try {
    Fs.closeSync(entry.fd)
  } catch {
    // Already closed.
  }
}
