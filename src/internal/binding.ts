/**
 * The registry's binding side: listening and binding sockets (TCP, unix,
 * UDP), or adopting the ones the previous generation passed, and registering
 * them (and connections and files) for the next generation. Each is a scoped resource; the bookkeeping
 * lives in `registry.ts`.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Dgram from "node:dgram"
import * as Fs from "node:fs"
import * as Net from "node:net"
import type { ListenOptions, PacketOptions } from "../Fds.js"
import { ListenError } from "../UpgradeError.js"
import * as Entries from "./entries.js"
import * as Handles from "./handles.js"
import * as Keys from "./keys.js"
import * as Log from "./log.js"
import type { Inherited, Registry } from "./registry.js"
import * as Sockets from "./sockets.js"

/**
 * Listens with `server` on an inherited socket when the previous generation
 * passed a matching one, or on a new one. The server stops accepting
 * (without unlinking a path another generation serves) when the scope
 * closes.
 *
 * @internal
 */
export const listen = <S extends Net.Server>(
  registry: Registry,
  options: ListenOptions,
  server: S
): Effect.Effect<S, ListenError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const request = yield* Sockets.resolveRequest(options)
      yield* registry.checkFree(request.key, request.label)
      const inherited = registry.claim(request)
      const entry = inherited !== undefined
        ? yield* adoptListener(server, inherited, request.label)
        : request.kind === "unix"
        ? yield* Sockets.bindUnix(server, request)
        : yield* Sockets.bindTcp(server, request)
      registry.register(
        Entries.listener(
          entry.key,
          server,
          entry.path === undefined ? undefined : { path: entry.path, pathInode: entry.inode }
        )
      )
      return entry
    }),
    (entry) => Effect.sync(() => registry.releaseListener(entry))
  ).pipe(Effect.as(server))

const adoptListener = (
  server: Net.Server,
  inherited: Inherited,
  label: string
): Effect.Effect<Sockets.ListenEntry, ListenError> =>
  Effect.gen(function*() {
    const { descriptor } = inherited
    yield* Sockets.listenOn(server, inherited.handle ?? { fd: inherited.fd! }, label).pipe(
      Effect.tapError(() => Effect.sync(() => Sockets.closeInherited(inherited)))
    )
    const entry: Sockets.ListenEntry = {
      key: descriptor.key,
      server,
      boundHere: false,
      path: descriptor.kind === "unix" ? descriptor.path : undefined,
      inode: descriptor.kind === "unix" ? descriptor.inode : undefined
    }
    yield* Log.debug(`adopted the inherited listener ${entry.key}`)
    return entry
  })

/**
 * Registers a server that is already listening, for the next generation.
 *
 * @internal
 */
export const addListener = (
  registry: Registry,
  server: Net.Server,
  name: string | undefined
): Effect.Effect<void, ListenError, Scope.Scope> =>
  Effect.acquireRelease(
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
      return Effect.as(registry.checkFree(key, key), key)
    }),
    (key) => Effect.sync(() => registry.forget(key))
  ).pipe(Effect.flatMap((key) =>
    Effect.sync(() => {
      const address = server.address()
      registry.register(
        Entries.listener(
          key,
          server,
          typeof address === "string" ? { path: address, pathInode: Sockets.inodeOf(address) } : undefined
        )
      )
    })
  ))

/**
 * Binds a UDP socket, or takes the one the previous generation passed.
 * Closed when the scope closes.
 *
 * @internal
 */
export const listenPacket = (
  registry: Registry,
  options: PacketOptions
): Effect.Effect<Dgram.Socket, ListenError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const port = options.port ?? 0
      const label = Keys.udp(options.type, options.host, port)
      const key = Keys.namedOr(options.name, label)
      yield* registry.checkFree(key, label)
      const addresses = yield* Sockets.candidateAddresses(options.host, label, options.type)
      const inherited = registry.take(key, "udp") ??
        registry.find((d) =>
          d.kind === "udp" && options.name === undefined && port !== 0 && d.type === options.type &&
          d.port === port && addresses.includes(d.address)
        )
      const bound = inherited !== undefined
        ? { key: inherited.descriptor.key, socket: yield* adoptPacket(options.type, inherited, label) }
        : yield* bindPacket(options, key, label)
      registry.register(Entries.packet(bound.key, bound.socket))
      return bound
    }),
    ({ key, socket }) =>
      Effect.sync(() => {
        registry.forget(key)
        socket.close()
      })
  ).pipe(Effect.map(({ socket }) => socket))

const adoptPacket = (
  type: "udp4" | "udp6",
  inherited: Inherited,
  label: string
): Effect.Effect<Dgram.Socket, ListenError> => {
  if (inherited.handle !== undefined) return Effect.sync(() => Handles.adoptDgram(type, inherited.handle as object))
  return Effect.tap(
    Sockets.bindDgram(Dgram.createSocket(type), { fd: inherited.fd! }, label),
    (socket) => Effect.sync(() => Handles.holdDatagrams(socket))
  )
}

const bindPacket = (
  options: PacketOptions,
  key: string,
  label: string
): Effect.Effect<{ readonly key: string; readonly socket: Dgram.Socket }, ListenError> => {
  const port = options.port ?? 0
  return Effect.map(
    Sockets.bindDgram(Dgram.createSocket({ type: options.type, reuseAddr: options.reuseAddr ?? false }), {
      port,
      ...(options.host === undefined ? {} : { address: options.host })
    }, label),
    (socket) => ({
      // A port-0 socket is known to the next generation by the port it got.
      key: options.name === undefined && port === 0 ? Keys.udp(options.type, options.host, socket.address().port) : key,
      socket
    })
  )
}

/**
 * Registers a UDP socket bound elsewhere, for the next generation.
 *
 * @internal
 */
export const addPacket = (
  registry: Registry,
  socket: Dgram.Socket,
  name: string | undefined
): Effect.Effect<void, ListenError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.suspend(() => {
      let address: { readonly address: string; readonly port: number; readonly family: string }
      try {
        address = socket.address()
      } catch (cause) {
        return Effect.fail(new ListenError({ address: name ?? "udp", reason: "Failed", cause }))
      }
      const type = address.family === "IPv6" ? "udp6" : "udp4"
      const key = Keys.namedOr(name, Keys.udp(type, address.address, address.port))
      return Effect.as(registry.checkFree(key, key), key)
    }),
    (key) => Effect.sync(() => registry.forget(key))
  ).pipe(Effect.flatMap((key) => Effect.sync(() => registry.register(Entries.packet(key, socket)))))

/**
 * Registers a connected socket under `name`. At an upgrade it stops
 * reading while the next generation takes it over; once that one is ready,
 * this generation's copy is destroyed (never ended: the connection is
 * shared) and the new generation owns it.
 *
 * @internal
 */
export const addConn = (
  registry: Registry,
  name: string,
  socket: Net.Socket
): Effect.Effect<void, ListenError, Scope.Scope> => {
  const key = Keys.conn(name)
  return Effect.acquireRelease(
    Effect.suspend(() => {
      if (Handles.socketFd(socket) === undefined) {
        return Effect.fail(new ListenError({ address: key, reason: "Failed", cause: "the socket is not connected" }))
      }
      return registry.checkFree(key, key)
    }),
    () => Effect.sync(() => registry.forget(key))
  ).pipe(Effect.flatMap(() => Effect.sync(() => registerConn(registry, key, socket))))
}

/**
 * Takes the connection the previous generation registered under `name`, and
 * registers it again.
 *
 * @internal
 */
export const conn = (registry: Registry, name: string): Effect.Effect<Option.Option<Net.Socket>> =>
  Effect.sync(() => {
    const key = Keys.conn(name)
    const inherited = registry.take(key, "conn")
    if (inherited === undefined) return Option.none()
    const socket = inherited.handle instanceof Net.Socket
      ? inherited.handle
      : new Net.Socket({ fd: inherited.fd!, readable: true, writable: true })
    registerConn(registry, key, socket)
    return Option.some(socket)
  })

const registerConn = (registry: Registry, key: string, socket: Net.Socket): void =>
  registry.register(Entries.conn(key, socket, () => registry.forget(key)))

/**
 * Registers an open fd (a file, pipe or FIFO, or any raw fd) under `name`;
 * the caller keeps owning it.
 *
 * @internal
 */
export const addFile = (
  registry: Registry,
  name: string,
  fd: number
): Effect.Effect<void, ListenError, Scope.Scope> => {
  const key = Keys.file(name)
  return Effect.acquireRelease(
    Effect.suspend(() => {
      try {
        Fs.fstatSync(fd)
      } catch (cause) {
        return Effect.fail(new ListenError({ address: key, reason: "Failed", cause }))
      }
      return registry.checkFree(key, key)
    }),
    () => Effect.sync(() => registry.forget(key))
  ).pipe(Effect.flatMap(() => Effect.sync(() => registry.register(Entries.file(key, fd)))))
}
