/**
 * The descriptor registry: listeners, packet sockets, connections and files
 * that survive an upgrade.
 *
 * In a new generation, `listen` and `listenPacket` hand back the very socket
 * the previous generation passed (no new bind, no refused connection, no lost
 * datagram); otherwise they bind a new one. `conn` and `file` take what the
 * previous generation registered under a name. Everything registered here is
 * passed on at the next upgrade.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type * as Dgram from "node:dgram"
import * as Net from "node:net"
import * as Fx from "./internal/fx.js"
import type * as Registry from "./internal/registry.js"
import type { ListenError } from "./UpgradeError.js"

/**
 * Where to listen: TCP (`host`, `port`) or a unix stream socket (`path`; a
 * leading `"\0"` means Linux's abstract namespace).
 *
 * Without a `name`, an inherited listener matches by address: the same `path`,
 * or the same `port` on the address `host` resolves to. A listener asked for
 * on port 0 is registered under the port it got, so the next generation asks
 * for that port (or both use the same `name`).
 *
 * @since 0.1.0
 * @category models
 */
export interface ListenOptions {
  /** Match inherited listeners by this name instead of by address. */
  readonly name?: string | undefined
  readonly host?: string | undefined
  readonly port?: number | undefined
  readonly path?: string | undefined
  readonly backlog?: number | undefined
  readonly ipv6Only?: boolean | undefined
}

/**
 * The registry service, provided by `Upgrader.layer` and `UpgraderTest.layer`.
 *
 * @since 0.1.0
 * @category tags
 */
export class Fds extends Fx.Tag<Fds, {
  /**
   * Makes `server` listen on an inherited socket or a new one, and registers
   * it for the next generation. Closing the scope stops the server accepting
   * (it does not cut open connections: that is the drain's job) and never
   * unlinks a unix socket path that another generation serves.
   */
  readonly listen: <S extends Net.Server>(
    options: ListenOptions,
    server: S
  ) => Effect.Effect<S, ListenError, Scope.Scope>
  /** Binds a UDP socket, or takes the one the previous generation passed; closed when the scope closes. */
  readonly listenPacket: (options: PacketOptions) => Effect.Effect<Dgram.Socket, ListenError, Scope.Scope>
  /** Registers a server that already listens (made by a framework, say) until the scope closes. */
  readonly addListener: (server: Net.Server, options?: { readonly name?: string }) => Effect.Effect<
    void,
    ListenError,
    Scope.Scope
  >
  /** Registers a bound UDP socket made elsewhere until the scope closes. */
  readonly addPacket: (socket: Dgram.Socket, options?: { readonly name?: string }) => Effect.Effect<
    void,
    ListenError,
    Scope.Scope
  >
  /**
   * Registers a connected socket under `name` until the scope closes. During
   * an upgrade it stops reading, so bytes that arrive stay in the kernel for
   * the next generation; once that one is ready this generation's copy is
   * destroyed (never ended: the peer sees nothing). If the upgrade fails it
   * reads again.
   */
  readonly addConn: (name: string, socket: Net.Socket) => Effect.Effect<void, ListenError, Scope.Scope>
  /** The connection the previous generation registered under `name`, registered again for the next one. */
  readonly conn: (name: string) => Effect.Effect<Option.Option<Net.Socket>>
  /**
   * Registers an open fd (a file, pipe, FIFO, or any raw fd) under `name`
   * until the scope closes. The caller keeps owning it; at most 13 travel.
   */
  readonly addFile: (name: string, fd: number) => Effect.Effect<void, ListenError, Scope.Scope>
  /** The fd the previous generation registered under `name`, registered again for the next one. */
  readonly file: (name: string) => Effect.Effect<Option.Option<number>>
  /** Every fd the previous generation registered, in the order it registered them. */
  readonly files: Effect.Effect<ReadonlyArray<{ readonly name: string; readonly fd: number }>>
  /** Keys of inherited descriptors nobody has claimed; they are closed at `ready`. */
  readonly unclaimed: Effect.Effect<ReadonlyArray<string>>
  /** Keys of the descriptors the next generation will receive. */
  readonly registered: Effect.Effect<ReadonlyArray<string>>
}>()("effect-tableflip/Fds") {}

/**
 * Listens on an inherited or new socket. Without a `server`, a plain
 * `net.Server` is made; pass an `http.Server` (or any `net.Server`) to serve
 * with it.
 *
 * @since 0.1.0
 * @category accessors
 */
export const listen = <S extends Net.Server = Net.Server>(
  options: ListenOptions,
  server?: S
): Effect.Effect<S, ListenError, Fds | Scope.Scope> =>
  Effect.flatMap(Fds, (fds) => fds.listen(options, server ?? (Net.createServer() as S)))

/**
 * Where to bind a UDP socket: `type` and `port` (0 for any), `host` to pick
 * an address. Matching works as for `listen`.
 *
 * @since 0.1.0
 * @category models
 */
export interface PacketOptions {
  readonly type: "udp4" | "udp6"
  readonly name?: string | undefined
  readonly host?: string | undefined
  readonly port?: number | undefined
  readonly reuseAddr?: boolean | undefined
}

/**
 * Binds a UDP socket, or takes the one the previous generation passed.
 *
 * @since 0.1.0
 * @category accessors
 */
export const listenPacket = (options: PacketOptions): Effect.Effect<Dgram.Socket, ListenError, Fds | Scope.Scope> =>
  Effect.flatMap(Fds, (fds) => fds.listenPacket(options))

/**
 * Registers a server that already listens, so the next generation inherits it.
 *
 * @since 0.1.0
 * @category accessors
 */
export const addListener = (
  server: Net.Server,
  options?: { readonly name?: string }
): Effect.Effect<void, ListenError, Fds | Scope.Scope> => Effect.flatMap(Fds, (fds) => fds.addListener(server, options))

/**
 * Registers a bound UDP socket made elsewhere.
 *
 * @since 0.1.0
 * @category accessors
 */
export const addPacket = (
  socket: Dgram.Socket,
  options?: { readonly name?: string }
): Effect.Effect<void, ListenError, Fds | Scope.Scope> => Effect.flatMap(Fds, (fds) => fds.addPacket(socket, options))

/**
 * Registers a connected socket under a name for the next generation.
 *
 * @since 0.1.0
 * @category accessors
 */
export const addConn = (name: string, socket: Net.Socket): Effect.Effect<void, ListenError, Fds | Scope.Scope> =>
  Effect.flatMap(Fds, (fds) => fds.addConn(name, socket))

/**
 * The connection the previous generation registered under `name`.
 *
 * @since 0.1.0
 * @category accessors
 */
export const conn = (name: string): Effect.Effect<Option.Option<Net.Socket>, never, Fds> =>
  Effect.flatMap(Fds, (fds) => fds.conn(name))

/**
 * Registers an open fd under a name for the next generation.
 *
 * @since 0.1.0
 * @category accessors
 */
export const addFile = (name: string, fd: number): Effect.Effect<void, ListenError, Fds | Scope.Scope> =>
  Effect.flatMap(Fds, (fds) => fds.addFile(name, fd))

/**
 * The fd the previous generation registered under `name`.
 *
 * @since 0.1.0
 * @category accessors
 */
export const file = (name: string): Effect.Effect<Option.Option<number>, never, Fds> =>
  Effect.flatMap(Fds, (fds) => fds.file(name))

/**
 * Every fd the previous generation registered, in its registration order.
 *
 * @since 0.1.0
 * @category accessors
 */
export const files: Effect.Effect<ReadonlyArray<{ readonly name: string; readonly fd: number }>, never, Fds> = Effect
  .flatMap(Fds, (fds) => fds.files)

/**
 * Keys of inherited descriptors nobody has claimed yet.
 *
 * @since 0.1.0
 * @category accessors
 */
export const unclaimed: Effect.Effect<ReadonlyArray<string>, never, Fds> = Effect.flatMap(Fds, (fds) => fds.unclaimed)

/**
 * Keys of the descriptors the next generation will receive.
 *
 * @since 0.1.0
 * @category accessors
 */
export const registered: Effect.Effect<ReadonlyArray<string>, never, Fds> = Effect.flatMap(
  Fds,
  (fds) => fds.registered
)

/**
 * Builds the service over a registry.
 *
 * @internal
 */
export const fromRegistry = (registry: Registry.Registry): Fx.ShapeOf<Fds> =>
  Fds.of({
    listen: (options, server) => registry.listen(options, server),
    listenPacket: (options) => registry.listenPacket(options),
    addListener: (server, options) => registry.addListener(server, options?.name),
    addPacket: (socket, options) => registry.addPacket(socket, options?.name),
    addConn: (name, socket) => registry.addConn(name, socket),
    conn: (name) => registry.conn(name),
    addFile: (name, fd) => registry.addFile(name, fd),
    file: (name) => registry.file(name),
    files: registry.files(),
    unclaimed: Effect.sync(() => registry.unclaimed()),
    registered: Effect.sync(() => registry.registered())
  })
