/**
 * The descriptor registry: what this generation inherited and has not yet
 * claimed, and what it serves and will hand to the next generation.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Dgram from "node:dgram"
import * as Dns from "node:dns"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import { ListenError, TooManyDescriptors } from "../UpgradeError.js"
import * as Handles from "./handles.js"
import * as Keys from "./keys.js"
import * as Log from "./log.js"
import * as Native from "./native.js"
import * as Procfs from "./procfs.js"
import * as Protocol from "./protocol.js"

/** @internal */
export interface ListenOptions {
  readonly name?: string | undefined
  readonly host?: string | undefined
  readonly port?: number | undefined
  readonly path?: string | undefined
  readonly backlog?: number | undefined
  readonly ipv6Only?: boolean | undefined
}

/** @internal */
export interface PacketOptions {
  readonly type: "udp4" | "udp6"
  readonly name?: string | undefined
  readonly host?: string | undefined
  readonly port?: number | undefined
  readonly reuseAddr?: boolean | undefined
}

/**
 * A descriptor the previous generation (or systemd) passed: the handle it
 * arrived as over the IPC channel, or the fd it was inherited at.
 *
 * @internal
 */
export interface Inherited {
  readonly descriptor: Protocol.Descriptor
  readonly handle?: unknown
  readonly fd?: number
}

/** What a registered descriptor becomes in the next generation's manifest. */
type Described = Protocol.Descriptor extends infer D ? D extends unknown ? Omit<D, "fd"> : never : never

interface Registered {
  readonly key: string
  /** The manifest entry, or `undefined` once the descriptor is gone. */
  readonly describe: () => Described | undefined
  /** What travels: a handle for `child.send`, or an fd to inherit. */
  readonly payload: () => { readonly handle: Net.Server | Net.Socket | Dgram.Socket | object } | {
    readonly fd: number
  }
  /** The sockfs inode, to tell registered sockets from stray ones. */
  readonly inode: () => string | undefined
  /** For a connection: stop reading while the next generation takes it over; resume or let go after. */
  readonly hold?: () => void
  readonly settle?: (handedOver: boolean) => void
}

/** @internal */
export interface Handover {
  /** JSON of the state handed over, if any (added by the lifecycle). */
  readonly state?: string | undefined
  readonly descriptors: ReadonlyArray<Protocol.Descriptor>
  /** Sockets to send over the IPC channel, by key. */
  readonly sockets: ReadonlyArray<{ readonly key: string; readonly handle: object }>
  /** Fds to place at `FIRST_FD`, `FIRST_FD + 1`, ... in the child. */
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
  readonly #inherited = new Map<string, Inherited>()
  readonly #used = new Map<string, Registered>()
  readonly #ownership: Ownership

  constructor(inherited: ReadonlyArray<Inherited>, ownership: Ownership) {
    for (const entry of inherited) this.#inherited.set(entry.descriptor.key, entry)
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
   * passed a matching one, or on a new one. The server stops accepting
   * (without unlinking a path another generation serves) when the scope
   * closes.
   */
  listen<S extends Net.Server>(options: ListenOptions, server: S): Effect.Effect<S, ListenError, Scope.Scope> {
    return Effect.acquireRelease(
      Effect.gen(this, function*() {
        const request = yield* resolveRequest(options)
        yield* this.#checkFree(request.key, request.label)
        const inherited = this.#claim(request)
        let entry: ListenEntry
        if (inherited !== undefined) {
          const { descriptor } = inherited
          yield* listenOn(server, inherited.handle ?? { fd: inherited.fd! }, request.label).pipe(
            Effect.tapError(() => Effect.sync(() => closeInherited(inherited)))
          )
          entry = {
            key: descriptor.key,
            server,
            boundHere: false,
            path: descriptor.kind === "unix" ? descriptor.path : undefined,
            inode: descriptor.kind === "unix" ? descriptor.inode : undefined
          }
          yield* Log.debug(`adopted the inherited listener ${entry.key}`)
        } else {
          entry = request.kind === "unix" ? yield* bindUnix(server, request) : yield* bindTcp(server, request)
        }
        this.#registerListener(
          entry.key,
          server,
          entry.path === undefined ? undefined : { path: entry.path, pathInode: entry.inode }
        )
        return entry
      }),
      (entry) => Effect.sync(() => this.#releaseListener(entry))
    ).pipe(Effect.as(server))
  }

  /** Registers a server that is already listening, for the next generation. */
  addListener(server: Net.Server, name: string | undefined): Effect.Effect<void, ListenError, Scope.Scope> {
    return Effect.acquireRelease(
      Effect.suspend(() => {
        const address = server.address()
        if (address === null || Handles.serverFd(server) === undefined) {
          return Effect.fail(
            new ListenError({ address: name ?? "server", reason: "Failed", cause: "the server is not listening" })
          )
        }
        const key = Keys.namedOr(
          name,
          typeof address === "string" ? Keys.unix(address) : Keys.tcp(address.address, address.port)
        )
        return Effect.as(this.#checkFree(key, key), key)
      }),
      (key) => Effect.sync(() => this.#used.delete(key))
    ).pipe(Effect.flatMap((key) =>
      Effect.sync(() => {
        const address = server.address()
        this.#registerListener(
          key,
          server,
          typeof address === "string" ? { path: address, pathInode: inodeOf(address) } : undefined
        )
      })
    ))
  }

  /** Binds a UDP socket, or takes the one the previous generation passed. Closed when the scope closes. */
  listenPacket(options: PacketOptions): Effect.Effect<Dgram.Socket, ListenError, Scope.Scope> {
    return Effect.acquireRelease(
      Effect.gen(this, function*() {
        const port = options.port ?? 0
        const label = Keys.udp(options.type, options.host, port)
        const key = Keys.namedOr(options.name, label)
        yield* this.#checkFree(key, label)
        const addresses = yield* candidateAddresses(options.host, label, options.type)
        const inherited = this.#take(key, "udp") ??
          this.#find((d) =>
            d.kind === "udp" && options.name === undefined && port !== 0 && d.type === options.type &&
            d.port === port && addresses.includes(d.address)
          )
        let socket: Dgram.Socket
        let registeredKey = key
        if (inherited !== undefined) {
          registeredKey = inherited.descriptor.key
          if (inherited.handle !== undefined) {
            socket = Handles.adoptDgram(options.type, inherited.handle as object)
          } else {
            socket = yield* bindDgram(Dgram.createSocket(options.type), { fd: inherited.fd! }, label)
            Handles.holdDatagrams(socket)
          }
        } else {
          socket = yield* bindDgram(Dgram.createSocket({ type: options.type, reuseAddr: options.reuseAddr ?? false }), {
            port,
            ...(options.host === undefined ? {} : { address: options.host })
          }, label)
          if (options.name === undefined && port === 0) {
            registeredKey = Keys.udp(options.type, options.host, socket.address().port)
          }
        }
        this.#registerPacket(registeredKey, socket)
        return { key: registeredKey, socket }
      }),
      ({ key, socket }) =>
        Effect.sync(() => {
          this.#used.delete(key)
          socket.close()
        })
    ).pipe(Effect.map(({ socket }) => socket))
  }

  /** Registers a UDP socket bound elsewhere, for the next generation. */
  addPacket(socket: Dgram.Socket, name: string | undefined): Effect.Effect<void, ListenError, Scope.Scope> {
    return Effect.acquireRelease(
      Effect.suspend(() => {
        let address: { readonly address: string; readonly port: number; readonly family: string }
        try {
          address = socket.address()
        } catch (cause) {
          return Effect.fail(new ListenError({ address: name ?? "udp", reason: "Failed", cause }))
        }
        const type = address.family === "IPv6" ? "udp6" : "udp4"
        const key = Keys.namedOr(name, Keys.udp(type, address.address, address.port))
        return Effect.as(this.#checkFree(key, key), key)
      }),
      (key) => Effect.sync(() => this.#used.delete(key))
    ).pipe(Effect.flatMap((key) => Effect.sync(() => this.#registerPacket(key, socket))))
  }

  /**
   * Registers a connected socket under `name`. At an upgrade it stops
   * reading while the next generation takes it over; once that one is ready,
   * this generation's copy is destroyed (never ended: the connection is
   * shared) and the new generation owns it.
   */
  addConn(name: string, socket: Net.Socket): Effect.Effect<void, ListenError, Scope.Scope> {
    const key = Keys.conn(name)
    return Effect.acquireRelease(
      Effect.suspend(() => {
        if (Handles.socketFd(socket) === undefined) {
          return Effect.fail(new ListenError({ address: key, reason: "Failed", cause: "the socket is not connected" }))
        }
        return this.#checkFree(key, key)
      }),
      () => Effect.sync(() => this.#used.delete(key))
    ).pipe(Effect.flatMap(() => Effect.sync(() => this.#registerConn(key, socket))))
  }

  /** Takes the connection the previous generation registered under `name`, and registers it again. */
  conn(name: string): Effect.Effect<Option.Option<Net.Socket>> {
    return Effect.sync(() => {
      const key = Keys.conn(name)
      const inherited = this.#take(key, "conn")
      if (inherited === undefined) return Option.none()
      const socket = inherited.handle instanceof Net.Socket
        ? inherited.handle
        : new Net.Socket({ fd: inherited.fd!, readable: true, writable: true })
      this.#registerConn(key, socket)
      return Option.some(socket)
    })
  }

  /** Registers an open fd (a file, pipe or FIFO, or any raw fd) under `name`; the caller keeps owning it. */
  addFile(name: string, fd: number): Effect.Effect<void, ListenError, Scope.Scope> {
    const key = Keys.file(name)
    return Effect.acquireRelease(
      Effect.suspend(() => {
        try {
          Fs.fstatSync(fd)
        } catch (cause) {
          return Effect.fail(new ListenError({ address: key, reason: "Failed", cause }))
        }
        return this.#checkFree(key, key)
      }),
      () => Effect.sync(() => this.#used.delete(key))
    ).pipe(Effect.flatMap(() => Effect.sync(() => this.#registerFile(key, fd))))
  }

  /** Takes the fd the previous generation registered under `name`, and registers it again. */
  file(name: string): Effect.Effect<Option.Option<number>> {
    return Effect.sync(() => Option.fromNullable(this.#claimFile(Keys.file(name))))
  }

  /** Takes every inherited fd, in the order the previous generation registered them. */
  files(): Effect.Effect<ReadonlyArray<{ readonly name: string; readonly fd: number }>> {
    return Effect.sync(() =>
      [...this.#inherited.values()].flatMap(({ descriptor }) =>
        descriptor.kind === "file"
          ? [{ name: Keys.fileName(descriptor.key) ?? descriptor.key, fd: this.#claimFile(descriptor.key)! }]
          : []
      )
    )
  }

  #claimFile(key: string): number | undefined {
    const inherited = this.#take(key, "file")
    if (inherited === undefined) return undefined
    this.#registerFile(key, inherited.fd!)
    return inherited.fd
  }

  #checkFree(key: string, label: string): Effect.Effect<void, ListenError> {
    return this.#used.has(key)
      ? Effect.fail(
        new ListenError({
          address: label,
          reason: "Failed",
          cause: `${key} is already registered in this generation; register it once and share it`
        })
      )
      : Effect.void
  }

  #take(key: string, kind: Protocol.Descriptor["kind"]): Inherited | undefined {
    const entry = this.#inherited.get(key)
    if (entry === undefined || entry.descriptor.kind !== kind) return undefined
    this.#inherited.delete(key)
    return entry
  }

  #find(predicate: (descriptor: Protocol.Descriptor) => boolean): Inherited | undefined {
    for (const entry of this.#inherited.values()) {
      if (predicate(entry.descriptor)) {
        this.#inherited.delete(entry.descriptor.key)
        return entry
      }
    }
    return undefined
  }

  #claim(request: Request): Inherited | undefined {
    const byKey = this.#take(request.key, request.kind)
    if (byKey !== undefined || request.name !== undefined) return byKey
    if (request.kind === "unix") return this.#find((d) => d.kind === "unix" && d.path === request.path)
    if (request.port === 0) return undefined
    return this.#find((d) => d.kind === "tcp" && d.port === request.port && request.addresses.includes(d.address))
  }

  /**
   * `unix` names the socket file of a unix listener: a server adopted from an
   * fd cannot tell its own path, and `pathInode` is what `unlinkIfSame` checks.
   */
  #registerListener(
    key: string,
    server: Net.Server,
    unix: { readonly path: string; readonly pathInode: string | undefined } | undefined
  ): void {
    this.#used.set(key, {
      key,
      describe: () => {
        if (Handles.serverFd(server) === undefined) return undefined
        if (unix !== undefined) {
          return {
            kind: "unix",
            key,
            path: unix.path,
            ...(unix.pathInode === undefined ? {} : { inode: unix.pathInode })
          }
        }
        const address = server.address() as Net.AddressInfo
        return {
          kind: "tcp",
          key,
          address: address.address,
          port: address.port,
          family: address.family === "IPv6" ? "IPv6" : "IPv4"
        }
      },
      payload: () => ({ handle: Handles.serverHandle(server)! }),
      inode: () => socketInode(Handles.serverFd(server))
    })
  }

  #registerPacket(key: string, socket: Dgram.Socket): void {
    this.#used.set(key, {
      key,
      describe: () => {
        if (Handles.dgramFd(socket) === undefined) return undefined
        const address = socket.address()
        return {
          kind: "udp",
          key,
          type: address.family === "IPv6" ? "udp6" : "udp4",
          address: address.address,
          port: address.port
        }
      },
      payload: () => ({ handle: Handles.dgramRawHandle(socket)! }),
      inode: () => socketInode(Handles.dgramFd(socket))
    })
  }

  #registerConn(key: string, socket: Net.Socket): void {
    this.#used.set(key, {
      key,
      describe: () => Handles.socketFd(socket) === undefined ? undefined : { kind: "conn", key },
      payload: () => ({ handle: socket }),
      inode: () => socketInode(Handles.socketFd(socket)),
      hold: () => Handles.stopReading(socket),
      settle: (handedOver) => {
        if (!handedOver) return void socket.resume()
        this.#used.delete(key)
        socket.destroy()
      }
    })
  }

  #registerFile(key: string, fd: number): void {
    this.#used.set(key, {
      key,
      describe: () => ({ kind: "file", key, fd: 0 }),
      payload: () => ({ fd }),
      inode: () => undefined
    })
  }

  #releaseListener(entry: ListenEntry): void {
    this.#used.delete(entry.key)
    // Stop accepting only: an http.Server's own close() would also cut idle
    // keep-alive connections, which is the drain's decision, not ours.
    if (entry.server.listening) Net.Server.prototype.close.call(entry.server)
    if (entry.path !== undefined && this.#ownership.mayUnlink(entry.boundHere)) {
      unlinkIfSame(entry.path, entry.inode)
    }
  }

  /**
   * Everything the next generation receives. Connections stop reading until
   * `settle` says how the upgrade ended.
   */
  handover(): Effect.Effect<Handover, TooManyDescriptors> {
    return Effect.suspend(() => {
      const descriptors: Array<Protocol.Descriptor> = []
      const sockets: Array<{ readonly key: string; readonly handle: object }> = []
      const fds: Array<number> = []
      for (const registered of this.#used.values()) {
        const described = registered.describe()
        if (described === undefined) continue
        const payload = registered.payload()
        if ("fd" in payload) {
          fds.push(payload.fd)
          descriptors.push({ ...described, fd: Protocol.FIRST_FD + fds.length - 1 } as Protocol.Descriptor)
        } else {
          sockets.push({ key: registered.key, handle: payload.handle })
          descriptors.push(described as Protocol.Descriptor)
        }
      }
      if (fds.length > Protocol.MAX_FILES) {
        return Effect.fail(new TooManyDescriptors({ count: fds.length, max: Protocol.MAX_FILES }))
      }
      for (const registered of this.#used.values()) registered.hold?.()
      return Effect.succeed({ descriptors, sockets, fds })
    })
  }

  /**
   * The registered files only, placed as `handover` places them: what a
   * prepared generation inherits when it starts, before its sockets.
   */
  registeredFiles(): Effect.Effect<Pick<Handover, "descriptors" | "fds">, TooManyDescriptors> {
    return Effect.suspend(() => {
      const descriptors: Array<Protocol.Descriptor> = []
      const fds: Array<number> = []
      for (const registered of this.#used.values()) {
        const described = registered.describe()
        const payload = registered.payload()
        if (described === undefined || !("fd" in payload)) continue
        fds.push(payload.fd)
        descriptors.push({ ...described, fd: Protocol.FIRST_FD + fds.length - 1 } as Protocol.Descriptor)
      }
      return fds.length > Protocol.MAX_FILES
        ? Effect.fail(new TooManyDescriptors({ count: fds.length, max: Protocol.MAX_FILES }))
        : Effect.succeed({ descriptors, fds })
    })
  }

  /**
   * The registered listening sockets (TCP, unix, UDP) with their raw handles:
   * what a generation hands up to a runner, which keeps them for the next one.
   */
  listeners(): ReadonlyArray<{ readonly descriptor: Protocol.SocketDescriptor; readonly handle: object }> {
    const listeners: Array<{ readonly descriptor: Protocol.SocketDescriptor; readonly handle: object }> = []
    for (const registered of this.#used.values()) {
      const described = registered.describe()
      if (described === undefined || described.kind === "conn" || described.kind === "file") continue
      const payload = registered.payload()
      if ("handle" in payload) {
        listeners.push({ descriptor: described as Protocol.SocketDescriptor, handle: payload.handle })
      }
    }
    return listeners
  }

  /** Keys of registered connections and files, which a runner cannot keep. */
  unsupervisable(): ReadonlyArray<string> {
    return [...this.#used.values()].filter((r) => {
      const kind = r.describe()?.kind
      return kind === "conn" || kind === "file"
    }).map((r) => r.key)
  }

  /** After an upgrade: hand connections over for good, or take them back. */
  settle(handedOver: boolean): void {
    for (const registered of [...this.#used.values()]) registered.settle?.(handedOver)
  }

  /**
   * Listening sockets this process holds that the registry does not know: a
   * server bound with a plain `listen()`. The next generation would find its
   * address taken.
   */
  strays(): ReadonlyArray<string> {
    if (!Procfs.available()) return []
    const known = new Set<string>()
    for (const registered of this.#used.values()) {
      const inode = registered.inode()
      if (inode !== undefined) known.add(inode)
    }
    // With the addon, ask each of this process's own sockets whether it listens: the cost follows this
    // process's fds. /proc/net/* lists every socket of the namespace, TIME_WAIT included (92 ms at 28k).
    const { addon } = Native.load()
    if (addon !== undefined) {
      const strays: Array<string> = []
      for (const [inode, fd] of Procfs.ownSockets()) {
        if (known.has(inode)) continue
        let where: ReturnType<typeof addon.listening>
        try {
          where = addon.listening(fd)
        } catch {
          continue // Closed while we looked.
        }
        if (where === null || where.family === "other" || (where.family === "unix" && where.path === "")) continue
        strays.push(where.family === "unix" ? Keys.unix(where.path) : Keys.tcp(where.address, where.port))
      }
      return strays
    }
    const all = Procfs.sockets()
    const strays: Array<string> = []
    for (const inode of Procfs.ownSockets().keys()) {
      const info = all.get(inode)
      if (info === undefined || !info.listening || known.has(inode)) continue
      if (info.kind === "tcp") strays.push(Keys.tcp(info.address, info.port))
      else if (info.kind === "unix" && info.stream && info.path !== undefined) strays.push(Keys.unix(info.path))
    }
    return strays
  }

  /**
   * Closes every inherited descriptor nobody claimed. A unix socket path that
   * is still the very file the previous generation bound is unlinked too: the
   * new configuration no longer serves it.
   */
  closeUnclaimed(): ReadonlyArray<string> {
    const closed = [...this.#inherited.values()]
    this.#inherited.clear()
    for (const entry of closed) {
      closeInherited(entry)
      if (entry.descriptor.kind === "unix") unlinkIfSame(entry.descriptor.path, entry.descriptor.inode)
    }
    return closed.map((entry) => entry.descriptor.key)
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

/** Where Node would bind `host`: the same lookup `server.listen` and `socket.bind` perform. */
const candidateAddresses = (
  host: string | undefined,
  label: string,
  type: "udp4" | "udp6" | undefined
): Effect.Effect<ReadonlyArray<string>, ListenError> => {
  if (host === undefined || host === "") {
    return Effect.succeed(type === "udp4" ? ["0.0.0.0"] : type === "udp6" ? ["::"] : ["::", "0.0.0.0"])
  }
  if (Net.isIP(host) !== 0) return Effect.succeed([host])
  return Effect.async<ReadonlyArray<string>, ListenError>((resume) => {
    const done = (error: Error | null, address: string) =>
      resume(
        error === null
          ? Effect.succeed([address])
          : Effect.fail(new ListenError({ address: label, reason: "Failed", cause: error }))
      )
    if (type === undefined) Dns.lookup(host, done)
    else Dns.lookup(host, type === "udp4" ? 4 : 6, done)
  })
}

const listenError = (label: string, error: unknown) =>
  new ListenError({
    address: label,
    reason: (error as NodeJS.ErrnoException).code === "EADDRINUSE" ? "AddressInUse" : "Failed",
    cause: error
  })

const listenOn = (server: Net.Server, options: object, label: string): Effect.Effect<void, ListenError> =>
  Effect.async<void, ListenError>((resume) => {
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

const bindDgram = (socket: Dgram.Socket, options: Dgram.BindOptions, label: string) =>
  Effect.async<Dgram.Socket, ListenError>((resume) => {
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
    const key = request.name === undefined && request.port === 0 ? Keys.tcp(request.host, address.port) : request.key
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

const socketInode = (fd: number | undefined): string | undefined =>
  fd === undefined ? undefined : Procfs.socketInode(fd)

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

const closeInherited = (entry: Inherited): void => {
  if (entry.handle !== undefined) return Handles.closeHandle(entry.handle)
  if (entry.fd === undefined) return
  try {
    Fs.closeSync(entry.fd)
  } catch {
    // Already closed.
  }
}
