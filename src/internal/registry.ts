/**
 * The descriptor registry: what this generation inherited and has not yet
 * claimed, and what it serves and will hand to the next generation. This is
 * the synchronous bookkeeping; binding and adopting sockets is in
 * `binding.ts`, what each kind of entry says in `entries.ts`, keys in
 * `keys.ts`.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type * as Dgram from "node:dgram"
import * as Net from "node:net"
import type { ListenOptions, PacketOptions } from "../Fds.js"
import type { TooManyDescriptors } from "../UpgradeError.js"
import { ListenError } from "../UpgradeError.js"
import * as Binding from "./binding.js"
import * as Entries from "./entries.js"
import * as Fx from "./fx.js"
import * as Keys from "./keys.js"
import * as Procfs from "./procfs.js"
import type * as Protocol from "./protocol.js"
import * as Placing from "./registry/handover.js"
import type { Handover } from "./registry/handover.js"
import * as Sockets from "./sockets.js"
import * as Strays from "./strays.js"

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

/** @internal */
export type { Handover } from "./registry/handover.js"

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
  readonly #used = new Map<string, Entries.Registered>()
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
   * passed a matching one, or on a new one; see `Binding.listen`.
   */
  listen<S extends Net.Server>(options: ListenOptions, server: S): Effect.Effect<S, ListenError, Scope.Scope> {
    return Binding.listen(this, options, server)
  }

  /** Registers a server that is already listening, for the next generation. */
  addListener(server: Net.Server, name: string | undefined): Effect.Effect<void, ListenError, Scope.Scope> {
    return Binding.addListener(this, server, name)
  }

  /** Binds a UDP socket, or takes the one the previous generation passed. Closed when the scope closes. */
  listenPacket(options: PacketOptions): Effect.Effect<Dgram.Socket, ListenError, Scope.Scope> {
    return Binding.listenPacket(this, options)
  }

  /** Registers a UDP socket bound elsewhere, for the next generation. */
  addPacket(socket: Dgram.Socket, name: string | undefined): Effect.Effect<void, ListenError, Scope.Scope> {
    return Binding.addPacket(this, socket, name)
  }

  /**
   * Registers a connected socket under `name`; at an upgrade it stops reading
   * while the next generation takes it over. See `Binding.addConn`.
   */
  addConn(name: string, socket: Net.Socket): Effect.Effect<void, ListenError, Scope.Scope> {
    return Binding.addConn(this, name, socket)
  }

  /** Takes the connection the previous generation registered under `name`, and registers it again. */
  conn(name: string): Effect.Effect<Option.Option<Net.Socket>> {
    return Binding.conn(this, name)
  }

  /** Registers an open fd (a file, pipe or FIFO, or any raw fd) under `name`; the caller keeps owning it. */
  addFile(name: string, fd: number): Effect.Effect<void, ListenError, Scope.Scope> {
    return Binding.addFile(this, name, fd)
  }

  /** Takes the fd the previous generation registered under `name`, and registers it again. */
  file(name: string): Effect.Effect<Option.Option<number>> {
    return Effect.sync(() => Fx.fromNullable(this.#claimFile(Keys.file(name))))
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
    const inherited = this.take(key, "file")
    if (inherited === undefined) return undefined
    this.register(Entries.file(key, inherited.fd!))
    return inherited.fd
  }

  // The claims and registrations below are what `binding.ts` calls; the app reaches them only through it.

  /** Fails when `key` is registered already in this generation. */
  checkFree(key: string, label: string): Effect.Effect<void, ListenError> {
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

  /** Claims the inherited descriptor under `key` if it is of `kind`. */
  take(key: string, kind: Protocol.Descriptor["kind"]): Inherited | undefined {
    const entry = this.#inherited.get(key)
    if (entry === undefined || entry.descriptor.kind !== kind) return undefined
    this.#inherited.delete(key)
    return entry
  }

  /** Claims the first inherited descriptor that matches. */
  find(predicate: (descriptor: Protocol.Descriptor) => boolean): Inherited | undefined {
    for (const entry of this.#inherited.values()) {
      if (predicate(entry.descriptor)) {
        this.#inherited.delete(entry.descriptor.key)
        return entry
      }
    }
    return undefined
  }

  /** Claims the inherited listener a request matches: by key, else (unnamed) by path or address. */
  claim(request: Sockets.Request): Inherited | undefined {
    const byKey = this.take(request.key, request.kind)
    if (byKey !== undefined || request.name !== undefined) return byKey
    if (request.kind === "unix") return this.find((d) => d.kind === "unix" && d.path === request.path)
    if (request.port === 0) return undefined
    return this.find((d) => d.kind === "tcp" && d.port === request.port && request.addresses.includes(d.address))
  }

  /** Registers an entry for the next generation. */
  register(entry: Entries.Registered): void {
    this.#used.set(entry.key, entry)
  }

  /** Forgets a registered entry: its scope closed. */
  forget(key: string): void {
    this.#used.delete(key)
  }

  /** Stops a listener accepting, and unlinks its unix socket path when this generation may. */
  releaseListener(entry: Sockets.ListenEntry): void {
    this.forget(entry.key)
    // Stop accepting only: an http.Server's own close() would also cut idle
    // keep-alive connections, which is the drain's decision, not ours.
    if (entry.server.listening) Net.Server.prototype.close.call(entry.server)
    if (entry.path !== undefined && this.#ownership.mayUnlink(entry.boundHere)) {
      Sockets.unlinkIfSame(entry.path, entry.inode)
    }
  }

  /**
   * Everything the next generation receives. Connections stop reading until
   * `settle` says how the upgrade ended.
   */
  handover(): Effect.Effect<Handover, TooManyDescriptors> {
    return Effect.suspend(() => {
      const placed = Placing.place(this.#used.values(), { sockets: true })
      if (Fx.isSuccess(placed)) { for (const registered of this.#used.values()) registered.hold?.() }
      return Fx.fromResult(placed)
    })
  }

  /**
   * The registered files only, placed as `handover` places them: what a
   * prepared generation inherits when it starts, before its sockets.
   */
  registeredFiles(): Effect.Effect<Pick<Handover, "descriptors" | "fds">, TooManyDescriptors> {
    return Effect.suspend(() =>
      Fx.fromResult(Fx.mapResult(
        Placing.place(this.#used.values(), { sockets: false }),
        ({ descriptors, fds }) => ({ descriptors, fds })
      ))
    )
  }

  /**
   * The registered listening sockets (TCP, unix, UDP) with their raw handles:
   * what a generation hands up to a runner, which keeps them for the next one.
   */
  listeners(): ReadonlyArray<{ readonly descriptor: Protocol.SocketDescriptor; readonly handle: object }> {
    return Placing.listeners(this.#used.values())
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
    return Strays.find(known)
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
      Sockets.closeInherited(entry)
      if (entry.descriptor.kind === "unix") Sockets.unlinkIfSame(entry.descriptor.path, entry.descriptor.inode)
    }
    return closed.map((entry) => entry.descriptor.key)
  }
}
