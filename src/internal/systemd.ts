/**
 * systemd socket activation: the sockets a first generation inherits through
 * `LISTEN_FDS`, `LISTEN_PID` and `LISTEN_FDNAMES` (sd_listen_fds(3)).
 *
 * @internal
 */
import * as Keys from "./keys.js"
import * as Procfs from "./procfs.js"
import type * as Protocol from "./protocol.js"
import type { Inherited } from "./registry.js"

/** systemd passes its sockets from fd 3 on. */
const SD_LISTEN_FDS_START = 3

/**
 * The sockets systemd passed to this process, each named by its
 * `FileDescriptorName=` (key `name:<name>`) and described by its address so
 * that a request by address matches too. The variables are removed from the
 * environment so that no child process takes them for its own.
 *
 * @internal
 */
export const take = (env: NodeJS.ProcessEnv = process.env): ReadonlyArray<Inherited> => {
  const count = Number(env.LISTEN_FDS)
  const pid = env.LISTEN_PID
  const names = env.LISTEN_FDNAMES?.split(":") ?? []
  delete env.LISTEN_FDS
  delete env.LISTEN_PID
  delete env.LISTEN_FDNAMES
  if (pid !== String(process.pid) || !Number.isInteger(count) || count <= 0) return []
  const sockets = Procfs.available() ? Procfs.sockets() : new Map<string, Procfs.SocketInfo>()
  const inherited: Array<Inherited> = []
  for (let i = 0; i < count; i++) {
    const fd = SD_LISTEN_FDS_START + i
    const name = names[i] !== undefined && names[i] !== "" && names[i] !== "unknown" ? names[i] : undefined
    const inode = Procfs.socketInode(fd)
    const info = inode === undefined ? undefined : sockets.get(inode)
    const descriptor = describe(fd, name, info)
    if (descriptor !== undefined) inherited.push({ descriptor, fd })
  }
  return inherited
}

const describe = (
  fd: number,
  name: string | undefined,
  info: Procfs.SocketInfo | undefined
): Protocol.Descriptor | undefined => {
  if (info === undefined) {
    // A FIFO or another file (ListenFIFO=, ListenSpecial=): by name only.
    return { kind: "file", key: Keys.file(name ?? `systemd-${fd}`), fd }
  }
  if (info.kind === "unix") {
    return info.path === undefined || !info.stream ? undefined : {
      kind: "unix",
      key: Keys.namedOr(name, Keys.unix(info.path)),
      path: info.path
    }
  }
  if (info.kind === "tcp") {
    return {
      kind: "tcp",
      key: Keys.namedOr(name, Keys.tcp(info.address, info.port)),
      address: info.address,
      port: info.port,
      family: info.family
    }
  }
  const type = info.family === "IPv6" ? "udp6" : "udp4"
  return {
    kind: "udp",
    key: Keys.namedOr(name, Keys.udp(type, info.address, info.port)),
    type,
    address: info.address,
    port: info.port
  }
}
