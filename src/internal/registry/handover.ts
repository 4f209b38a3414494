/**
 * What the registered entries become when they leave this generation: the
 * handover a successor receives (sockets over the IPC channel, fds placed
 * from `FIRST_FD`), the files a prepared generation inherits at its start,
 * and the listeners a generation hands up to a runner. Pure functions of the
 * registry's entries; the registry holds the state.
 *
 * @internal
 */
import { TooManyDescriptors } from "../../UpgradeError.js"
import type * as Entries from "../entries.js"
import * as Fx from "../fx.js"
import * as Protocol from "../protocol.js"

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
 * The entries placed as a successor receives them: each fd at the next place
 * from `FIRST_FD`, each socket by key; with `sockets: false`, the fds only
 * (what a prepared generation inherits when it starts, before its sockets).
 *
 * @internal
 */
export const place = (
  used: Iterable<Entries.Registered>,
  options: { readonly sockets: boolean }
): Fx.Result<Handover, TooManyDescriptors> => {
  const descriptors: Array<Protocol.Descriptor> = []
  const sockets: Array<{ readonly key: string; readonly handle: object }> = []
  const fds: Array<number> = []
  for (const registered of used) {
    const described = registered.describe()
    if (described === undefined) continue
    const payload = registered.payload()
    if ("fd" in payload) {
      fds.push(payload.fd)
      descriptors.push({ ...described, fd: Protocol.FIRST_FD + fds.length - 1 } as Protocol.Descriptor)
    } else if (options.sockets) {
      sockets.push({ key: registered.key, handle: payload.handle })
      descriptors.push(described as Protocol.Descriptor)
    }
  }
  return fds.length > Protocol.MAX_FILES
    ? Fx.fail(new TooManyDescriptors({ count: fds.length, max: Protocol.MAX_FILES }))
    : Fx.succeed({ descriptors, sockets, fds })
}

/** The listening sockets (TCP, unix, UDP) with their raw handles: what goes up to a runner. @internal */
export const listeners = (
  used: Iterable<Entries.Registered>
): ReadonlyArray<{ readonly descriptor: Protocol.SocketDescriptor; readonly handle: object }> => {
  const found: Array<{ readonly descriptor: Protocol.SocketDescriptor; readonly handle: object }> = []
  for (const registered of used) {
    const described = registered.describe()
    if (described === undefined || described.kind === "conn" || described.kind === "file") continue
    const payload = registered.payload()
    if ("handle" in payload) found.push({ descriptor: described as Protocol.SocketDescriptor, handle: payload.handle })
  }
  return found
}
