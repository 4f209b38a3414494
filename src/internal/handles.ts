/**
 * The one place that reaches into Node's private handles.
 *
 * Node offers no public way to learn the fd behind a server or socket, to
 * hand a listening socket to a child without wrapping it in a `net.Server`
 * there, or to stop a socket reading from the kernel. Every such access lives
 * here so that a change in Node's internals breaks one module, loudly.
 *
 * @internal
 */
import * as Dgram from "node:dgram"
import * as Net from "node:net"

interface Handle {
  readonly fd?: unknown
  reading?: boolean
  readStop?: () => number
}

const handleOf = (object: Net.Server | Net.Socket): Handle | undefined =>
  (object as unknown as { readonly _handle?: Handle | null })._handle ?? undefined

const fdOf = (handle: Handle | undefined): number | undefined => {
  const fd = handle?.fd
  return typeof fd === "number" && fd >= 0 ? fd : undefined
}

/**
 * The listening handle of a server: what the child receives over the IPC
 * channel and adopts with `server.listen(handle)`, without a `net.Server` of
 * its own wrapped around it.
 *
 * @internal
 */
export const serverHandle = (server: Net.Server): object | undefined => handleOf(server)

/**
 * The fd of a listening server, or `undefined` when it is not listening.
 *
 * @internal
 */
export const serverFd = (server: Net.Server): number | undefined => fdOf(handleOf(server))

/**
 * The fd of a raw handle (what `Registry.listeners` returns).
 *
 * @internal
 */
export const handleFd = (handle: object): number | undefined => fdOf(handle as Handle)

/**
 * The fd of a connected socket.
 *
 * @internal
 */
export const socketFd = (socket: Net.Socket): number | undefined => fdOf(handleOf(socket))

interface UdpHandle extends Handle {
  readonly recvStart?: () => number
  readonly recvStop?: () => number
}

/**
 * The raw handle of a bound UDP socket, to send over the IPC channel. Sent as
 * a `dgram.Socket`, Node would start it receiving in the child as soon as it
 * arrives, long before the application listens, and drop what it reads.
 * (`socket._handle` would work too, with a deprecation warning, DEP0112, on
 * every use.)
 *
 * @internal
 */
export const dgramRawHandle = (socket: Dgram.Socket): UdpHandle | undefined => {
  const symbol = Object.getOwnPropertySymbols(socket).find((s) => s.description === "state symbol")
  const state = symbol === undefined ? undefined : (socket as unknown as Record<symbol, { handle?: UdpHandle }>)[symbol]
  return state?.handle
}

/**
 * Wraps a raw UDP handle from the previous generation in a `dgram.Socket`,
 * holding datagrams in the kernel until the application listens.
 *
 * @internal
 */
export const adoptDgram = (type: "udp4" | "udp6", handle: object): Dgram.Socket => {
  const socket = Dgram.createSocket(type)
  // bind() takes a handle as cluster workers do: it starts receiving at once.
  socket.bind(handle as unknown as Dgram.BindOptions)
  holdDatagrams(socket)
  return socket
}

/**
 * The fd of a bound UDP socket.
 *
 * @internal
 */
export const dgramFd = (socket: Dgram.Socket): number | undefined => fdOf(dgramRawHandle(socket))

/**
 * Leaves datagrams in the kernel until the application listens for them.
 * A UDP socket that arrives from the previous generation (or is opened on
 * systemd's fd) is receiving already, and a datagram read before anyone
 * listens for 'message' is dropped on the floor.
 *
 * @internal
 */
export const holdDatagrams = (socket: Dgram.Socket): void => {
  const handle = dgramRawHandle(socket)
  if (handle?.recvStop === undefined || handle.recvStart === undefined) return
  handle.recvStop()
  const onListener = (event: string | symbol) => {
    if (event !== "message") return
    socket.off("newListener", onListener)
    // 'newListener' fires before the listener is added.
    process.nextTick(() => handle.recvStart!())
  }
  socket.on("newListener", onListener)
}

/**
 * Stops a connected socket reading from the kernel, so bytes that arrive
 * while the next generation takes it over stay in the kernel for it. `pause()`
 * alone keeps reading into the stream's buffer.
 *
 * @internal
 */
export const stopReading = (socket: Net.Socket): void => {
  socket.pause()
  const handle = handleOf(socket)
  if (handle?.readStop !== undefined && handle.reading === true) {
    handle.readStop()
    // Node starts reading again on resume() only if it believes it stopped.
    handle.reading = false
  }
}

/**
 * Closes a handle that arrived from the previous generation and was not used:
 * a connection is destroyed (never ended: the peer must see nothing), a raw
 * listening or UDP handle is closed.
 *
 * @internal
 */
export const closeHandle = (handle: unknown): void => {
  if (handle instanceof Net.Socket) handle.destroy()
  else (handle as { close?: () => void } | undefined)?.close?.()
}

/**
 * What a handle that arrived over the IPC channel is, by Node's internal
 * class name (`TCP`, `Pipe`, `UDP`) or, for a socket, `Socket`: for messages.
 *
 * @internal
 */
export const describeHandle = (handle: unknown): string =>
  typeof handle === "object" && handle !== null ? handle.constructor.name : typeof handle

/**
 * Whether a handle that arrived over the channel is what the manifest says.
 *
 * @internal
 */
export const fits = (kind: "tcp" | "unix" | "udp" | "conn", handle: unknown): boolean => {
  switch (kind) {
    case "tcp":
      return describeHandle(handle) === "TCP"
    case "unix":
      return describeHandle(handle) === "Pipe"
    case "udp":
      return describeHandle(handle) === "UDP"
    case "conn":
      return handle instanceof Net.Socket
  }
}
