/**
 * Listening sockets this process holds outside the registry: a server bound
 * with a plain `listen()`, whose address the next generation would find
 * taken. Linux only (it reads /proc).
 *
 * @internal
 */
import * as Keys from "./keys.js"
import * as Native from "./native.js"
import * as Procfs from "./procfs.js"

/**
 * Keys of this process's listening sockets whose sockfs inode is not in
 * `known`. The caller checks `Procfs.available()` first.
 *
 * @internal
 */
export const find = (known: ReadonlySet<string>): ReadonlyArray<string> => {
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
