/**
 * What the registry keeps for each kind of descriptor it will hand over: how
 * it reads in the next generation's manifest, what travels (a handle or an
 * fd), and, for a connection, how it pauses and settles around an upgrade.
 *
 * @internal
 */
import type * as Dgram from "node:dgram"
import type * as Net from "node:net"
import * as Handles from "./handles.js"
import type * as Protocol from "./protocol.js"
import { socketInode } from "./sockets.js"

/**
 * What a registered descriptor becomes in the next generation's manifest.
 *
 * @internal
 */
export type Described = Protocol.Descriptor extends infer D ? D extends unknown ? Omit<D, "fd"> : never : never

/**
 * One registered descriptor.
 *
 * @internal
 */
export interface Registered {
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

/**
 * A listening server. `unix` names the socket file of a unix listener: a
 * server adopted from an fd cannot tell its own path, and `pathInode` is what
 * `unlinkIfSame` checks.
 *
 * @internal
 */
export const listener = (
  key: string,
  server: Net.Server,
  unix: { readonly path: string; readonly pathInode: string | undefined } | undefined
): Registered => ({
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

/**
 * A bound UDP socket.
 *
 * @internal
 */
export const packet = (key: string, socket: Dgram.Socket): Registered => ({
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

/**
 * A connected socket. Once handed over, `forget` drops it from the registry
 * and this generation's copy is destroyed (never ended: the connection is
 * shared).
 *
 * @internal
 */
export const conn = (key: string, socket: Net.Socket, forget: () => void): Registered => ({
  key,
  describe: () => Handles.socketFd(socket) === undefined ? undefined : { kind: "conn", key },
  payload: () => ({ handle: socket }),
  inode: () => socketInode(Handles.socketFd(socket)),
  hold: () => Handles.stopReading(socket),
  settle: (handedOver) => {
    if (!handedOver) return void socket.resume()
    forget()
    socket.destroy()
  }
})

/**
 * An open fd the caller keeps owning.
 *
 * @internal
 */
export const file = (key: string, fd: number): Registered => ({
  key,
  describe: () => ({ kind: "file", key, fd: 0 }),
  payload: () => ({ fd }),
  inode: () => undefined
})
