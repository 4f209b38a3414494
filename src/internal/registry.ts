/**
 * The descriptor registry: what this generation inherited and has not yet
 * claimed, and what it serves and will hand to the next generation.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Dns from "node:dns"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import { ListenError, TooManyDescriptors } from "../UpgradeError.js"
import { serverFd } from "./handles.js"
import * as Protocol from "./protocol.js"

/**
 * Where and how to listen.
 *
 * @internal
 */
export interface ListenOptions {
  readonly name?: string | undefined
  readonly host?: string | undefined
  readonly port?: number | undefined
  readonly path?: string | undefined
  readonly backlog?: number | undefined
  readonly ipv6Only?: boolean | undefined
}

/** What a registered descriptor becomes in the next generation's manifest, less its fd. */
type Described = Protocol.Descriptor extends infer D ? D extends unknown ? Omit<D, "fd"> : never : never

interface Registered {
  readonly key: string
  readonly fd: () => number | undefined
  readonly describe: () => Described
}

/** @internal */
export interface Handover {
  readonly descriptors: ReadonlyArray<Protocol.Descriptor>
  /** The fds to place at `FIRST_FD`, `FIRST_FD + 1`, ... in the child, in manifest order. */
  readonly fds: ReadonlyArray<number>
}

/**
 * Whether this generation is the one serving, and so may unlink its unix
 * socket paths on a final shutdown. Supplied by the lifecycle.
 *
 * @internal
 */
export interface Ownership {
  readonly mayUnlink: (boundHere: boolean) => boolean
}

/** @internal */
export class Registry {
  readonly #inherited = new Map<string, Protocol.Descriptor>()
  readonly #used = new Map<string, Registered>()
  readonly #ownership: Ownership

  constructor(inherited: ReadonlyArray<Protocol.Descriptor>, ownership: Ownership) {
    for (const descriptor of inherited) this.#inherited.set(descriptor.key, descriptor)
    this.#ownership = ownership
  }

  /** Keys of the inherited descriptors nobody has claimed yet. */
  unclaimed(): ReadonlyArray<string> {
    return [...this.#inherited.keys()]
  }

  /** Keys of the descriptors this generation will hand over. */
  registered(): ReadonlyArray<string> {
    return [...this.#used.keys()]
  }

  /**
   * Listens with `server` on an inherited socket when the previous generation
   * passed a matching one, or on a new one. The server is closed (without
   * unlinking a path another generation serves) when the scope closes.
   */
  listen<S extends Net.Server>(options: ListenOptions, server: S): Effect.Effect<S, ListenError, Scope.Scope> {
    return Effect.acquireRelease(
      Effect.suspend(() => this.#acquire(options, server)),
      (entry) => Effect.sync(() => this.#release(entry))
    ).pipe(Effect.as(server))
  }

  #acquire<S extends Net.Server>(options: ListenOptions, server: S): Effect.Effect<ListenEntry, ListenError> {
    return Effect.gen(this, function*() {
      const request = yield* resolveRequest(options)
      if (this.#used.has(request.key)) {
        return yield* new ListenError({
          address: request.label,
          reason: "Failed",
          cause: "this generation already listens there; listen once and share the server"
        })
      }
      const inherited = this.#match(request)
      if (inherited !== undefined) {
        this.#inherited.delete(inherited.key)
        yield* listenOn(server, { fd: inherited.fd }, request.label).pipe(
          Effect.tapError(() => Effect.sync(() => closeFd(inherited.fd)))
        )
        const entry: ListenEntry = {
          key: inherited.key,
          server,
          boundHere: false,
          path: inherited.kind === "unix" ? inherited.path : undefined,
          inode: inherited.kind === "unix" ? inherited.inode : undefined
        }
        this.#register(entry, request)
        yield* Effect.logDebug("adopted inherited listener").pipe(Effect.annotateLogs({ key: entry.key }))
        return entry
      }
      const entry = request.kind === "unix"
        ? yield* bindUnix(server, request)
        : yield* bindTcp(server, request)
      this.#register(entry, request)
      return entry
    })
  }

  #match(request: Request): Protocol.Descriptor | undefined {
    const byKey = this.#inherited.get(request.key)
    if (byKey !== undefined) return byKey.kind === request.kind ? byKey : undefined
    if (request.kind !== "tcp" || request.name !== undefined || request.port === 0) return undefined
    for (const descriptor of this.#inherited.values()) {
      if (
        descriptor.kind === "tcp" && descriptor.port === request.port &&
        request.addresses.includes(descriptor.address)
      ) {
        return descriptor
      }
    }
    return undefined
  }

  #register(entry: ListenEntry, request: Request): void {
    const key = entry.key
    const server = entry.server
    this.#used.set(key, {
      key,
      fd: () => serverFd(server),
      describe: () => {
        if (request.kind === "unix") {
          return { kind: "unix", key, path: request.path, ...(entry.inode === undefined ? {} : { inode: entry.inode }) }
        }
        const address = server.address() as Net.AddressInfo
        return {
          kind: "tcp",
          key,
          address: address.address,
          port: address.port,
          family: address.family === "IPv6" ? "IPv6" : "IPv4"
        }
      }
    })
  }

  #release(entry: ListenEntry): void {
    this.#used.delete(entry.key)
    // Stop accepting only: an http.Server's own close() would also cut idle
    // keep-alive connections, which is the drain's decision, not ours.
    if (entry.server.listening) Net.Server.prototype.close.call(entry.server)
    if (entry.path !== undefined && this.#ownership.mayUnlink(entry.boundHere)) {
      unlinkIfSame(entry.path, entry.inode)
    }
  }

  /** Descriptors for the next generation, in the fd layout of the protocol. */
  handover(): Effect.Effect<Handover, TooManyDescriptors> {
    return Effect.suspend(() => {
      const live: Array<{ readonly fd: number; readonly described: Described }> = []
      for (const registered of this.#used.values()) {
        const fd = registered.fd()
        if (fd !== undefined) live.push({ fd, described: registered.describe() })
      }
      if (live.length > Protocol.MAX_DESCRIPTORS) {
        return Effect.fail(new TooManyDescriptors({ count: live.length, max: Protocol.MAX_DESCRIPTORS }))
      }
      return Effect.succeed({
        descriptors: live.map(({ described }, i) =>
          ({ ...described, fd: Protocol.FIRST_FD + i }) as Protocol.Descriptor
        ),
        fds: live.map(({ fd }) => fd)
      })
    })
  }

  /**
   * Closes every inherited descriptor nobody claimed. A unix socket path that
   * is still the very file the previous generation bound is unlinked too: the
   * new configuration no longer serves it.
   */
  closeUnclaimed(): ReadonlyArray<string> {
    const closed = [...this.#inherited.values()]
    this.#inherited.clear()
    for (const descriptor of closed) {
      closeFd(descriptor.fd)
      if (descriptor.kind === "unix") unlinkIfSame(descriptor.path, descriptor.inode)
    }
    return closed.map((descriptor) => descriptor.key)
  }
}

interface ListenEntry {
  readonly key: string
  readonly server: Net.Server
  /** Bound by this process rather than inherited. */
  readonly boundHere: boolean
  readonly path: string | undefined
  readonly inode: string | undefined
}

type Request =
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

const resolveRequest = (options: ListenOptions): Effect.Effect<Request, ListenError> => {
  const name = options.name
  if (options.path !== undefined) {
    const path = isAbstract(options.path) ? options.path : Path.resolve(options.path)
    const label = isAbstract(path) ? `unix:@${path.slice(1)}` : `unix:${path}`
    return Effect.succeed({
      kind: "unix",
      key: name === undefined ? label : `name:${name}`,
      label,
      name,
      path,
      backlog: options.backlog
    })
  }
  const port = options.port ?? 0
  const host = options.host
  const label = `tcp:${host !== undefined && host.includes(":") ? `[${host}]` : (host ?? "*")}:${port}`
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    return Effect.fail(new ListenError({ address: label, reason: "Failed", cause: `port ${port} is out of range` }))
  }
  return Effect.map(candidateAddresses(host, label), (addresses) => ({
    kind: "tcp" as const,
    key: name === undefined ? label : `name:${name}`,
    label,
    name,
    host,
    port,
    addresses,
    backlog: options.backlog,
    ipv6Only: options.ipv6Only
  }))
}

/** Where Node would bind `host`: the same lookup `server.listen` performs. */
const candidateAddresses = (
  host: string | undefined,
  label: string
): Effect.Effect<ReadonlyArray<string>, ListenError> => {
  if (host === undefined || host === "") return Effect.succeed(["::", "0.0.0.0"])
  if (Net.isIP(host) !== 0) return Effect.succeed([host])
  return Effect.async<ReadonlyArray<string>, ListenError>((resume) => {
    Dns.lookup(host, (error, address) => {
      resume(
        error === null
          ? Effect.succeed([address])
          : Effect.fail(new ListenError({ address: label, reason: "Failed", cause: error }))
      )
    })
  })
}

const listenOn = (
  server: Net.Server,
  options: Net.ListenOptions & { readonly fd?: number },
  label: string
): Effect.Effect<void, ListenError> =>
  Effect.async<void, ListenError>((resume) => {
    const onError = (error: NodeJS.ErrnoException) => {
      server.off("listening", onListening)
      resume(Effect.fail(
        new ListenError({
          address: label,
          reason: error.code === "EADDRINUSE" ? "AddressInUse" : "Failed",
          cause: error
        })
      ))
    }
    const onListening = () => {
      server.off("error", onError)
      resume(Effect.void)
    }
    server.once("error", onError)
    server.once("listening", onListening)
    try {
      server.listen(options as Net.ListenOptions)
    } catch (error) {
      server.off("error", onError)
      server.off("listening", onListening)
      resume(Effect.fail(new ListenError({ address: label, reason: "Failed", cause: error })))
    }
  })

const bindTcp = (server: Net.Server, request: Extract<Request, { kind: "tcp" }>) =>
  Effect.gen(function*() {
    yield* listenOn(server, {
      port: request.port,
      ...(request.host === undefined ? {} : { host: request.host }),
      ...(request.backlog === undefined ? {} : { backlog: request.backlog }),
      ...(request.ipv6Only === undefined ? {} : { ipv6Only: request.ipv6Only })
    }, request.label)
    const address = server.address() as Net.AddressInfo
    // A port-0 listener is known to the next generation by the port it got.
    const key = request.name === undefined && request.port === 0
      ? `tcp:${
        request.host !== undefined && request.host.includes(":") ? `[${request.host}]` : (request.host ?? "*")
      }:${address.port}`
      : request.key
    return { key, server, boundHere: true, path: undefined, inode: undefined } satisfies ListenEntry
  })

/**
 * Binds a unix socket without ever unlinking a path another process serves:
 * a live socket at the path is an error; a stale one (nobody accepts) is
 * replaced. The socket is bound under a temporary name and renamed into
 * place, so the path never points at nothing and libuv's unlink-on-close
 * only ever removes the temporary name.
 */
const bindUnix = (server: Net.Server, request: Extract<Request, { kind: "unix" }>) =>
  Effect.gen(function*() {
    const listenOptions = request.backlog === undefined ? {} : { backlog: request.backlog }
    if (isAbstract(request.path)) {
      yield* listenOn(server, { path: request.path, ...listenOptions }, request.label)
      return { key: request.key, server, boundHere: true, path: undefined, inode: undefined } satisfies ListenEntry
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

const checkUnixPath = (request: Extract<Request, { kind: "unix" }>): Effect.Effect<void, ListenError> =>
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
    return Effect.async<void, ListenError>((resume) => {
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

const isAbstract = (path: string): boolean => path.startsWith("\0")

const inodeOf = (path: string): string | undefined => {
  try {
    const stat = Fs.statSync(path, { bigint: true })
    return `${stat.dev}:${stat.ino}`
  } catch {
    return undefined
  }
}

const unlinkIfSame = (path: string, inode: string | undefined): void => {
  if (inode === undefined || inodeOf(path) !== inode) return
  try {
    Fs.unlinkSync(path)
  } catch {
    // Already gone: nothing to clean.
  }
}

const closeFd = (fd: number): void => {
  try {
    Fs.closeSync(fd)
  } catch {
    // Already closed.
  }
}
