/**
 * The one place that reaches into Node's private handles.
 *
 * Node offers no public way to learn the fd behind a listening server, yet
 * the fd is what a child process inherits. Every such access lives here so a
 * change in Node's internals breaks one module, loudly.
 *
 * @internal
 */
import type * as Net from "node:net"

interface HandleLike {
  readonly fd?: unknown
}

/**
 * The fd of a listening `net.Server` (or `http.Server`), or `undefined` when
 * it is not listening or its handle has no fd (a platform without one).
 *
 * @internal
 */
export const serverFd = (server: Net.Server): number | undefined => {
  const handle = (server as unknown as { readonly _handle?: HandleLike | null })._handle
  const fd = handle?.fd
  return typeof fd === "number" && fd >= 0 ? fd : undefined
}
