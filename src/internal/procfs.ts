/**
 * What the kernel knows about this process's sockets, read from /proc
 * (Linux). Used to name the sockets systemd passes, and to find listeners
 * that bypassed the registry before they make an upgrade fail.
 *
 * @internal
 */
import * as Fs from "node:fs"

/** @internal */
export type SocketInfo =
  | {
    readonly kind: "tcp" | "udp"
    readonly inode: string
    readonly family: "IPv4" | "IPv6"
    readonly address: string
    readonly port: number
    readonly listening: boolean
  }
  | {
    readonly kind: "unix"
    readonly inode: string
    readonly path: string | undefined
    readonly stream: boolean
    readonly listening: boolean
  }

/** @internal */
export const available = (): boolean => Fs.existsSync("/proc/self/fd") && Fs.existsSync("/proc/net/tcp")

/**
 * A process's state letter (`R`, `S`, `Z` for a zombie, ...), parent pid and
 * start time (clock ticks after boot: with the pid, it names one process for
 * the machine's uptime, as a pid alone does not once pids are reused), or
 * `undefined` when it does not exist (or /proc cannot be read).
 */
export const processStat = (
  pid: number
): { readonly state: string; readonly ppid: number; readonly startTime: string } | undefined => {
  try {
    const stat = Fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    // The command name in parentheses may hold spaces: the fields follow its last ')', from field 3 on.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return { state: fields[0]!, ppid: Number(fields[1]), startTime: fields[19]! }
  } catch {
    return undefined
  }
}

/** The effective uid a process runs as, or `undefined` when it does not exist. */
export const processUid = (pid: number): number | undefined => {
  try {
    const match = /^Uid:\s+\d+\s+(\d+)/m.exec(Fs.readFileSync(`/proc/${pid}/status`, "utf8"))
    return match === null ? undefined : Number(match[1])
  } catch {
    return undefined
  }
}

/**
 * When a process started (ms since the epoch, to within the kernel's 10 ms
 * tick) and the user it runs as, or `undefined` when it does not exist.
 * A pid is reused; a pid and its start (`startTicks`, exact, where
 * `startedAt` varies by a tick from call to call) are not.
 */
export const processIdentity = (
  pid: number
): { readonly startTicks: number; readonly startedAt: number; readonly uid: number } | undefined => {
  const stat = processStat(pid)
  const uid = processUid(pid)
  if (stat === undefined || uid === undefined) return undefined
  try {
    // USER_HZ is 100 on every architecture Linux runs Node on; /proc/uptime has the same 10 ms grain.
    const uptime = Number(Fs.readFileSync("/proc/uptime", "utf8").split(" ")[0])
    const ticks = Number(stat.startTime)
    return { startTicks: ticks, startedAt: Date.now() - uptime * 1000 + ticks * 10, uid }
  } catch {
    return undefined
  }
}

/**
 * Whether process `pid` has a handler for `signal` (the `SigCgt` mask in
 * /proc/<pid>/status): if not, the signal's default action applies, which
 * for SIGHUP and SIGUSR2 ends the process. `undefined` if it cannot be read.
 */
export const catches = (pid: number, signal: NodeJS.Signals): boolean | undefined => {
  // Taken here, for the CLI: a generation never asks, and need not load node:os.
  const number = process.getBuiltinModule("node:os").constants.signals[signal]
  try {
    const mask = /^SigCgt:\s*([0-9a-f]+)$/m.exec(Fs.readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]
    return mask === undefined ? undefined : ((BigInt(`0x${mask}`) >> BigInt(number - 1)) & 1n) === 1n
  } catch {
    return undefined
  }
}

/** The sockfs inode of an open fd, or `undefined` if it is not a socket. */
export const socketInode = (fd: number): string | undefined => {
  try {
    const stat = Fs.fstatSync(fd)
    return stat.isSocket() ? String(stat.ino) : undefined
  } catch {
    return undefined
  }
}

/** Inode -> fd for every socket this process holds. */
export const ownSockets = (): Map<string, number> => {
  const sockets = new Map<string, number>()
  for (const fd of Fs.readdirSync("/proc/self/fd")) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(Fs.readlinkSync(`/proc/self/fd/${fd}`))
      if (match !== null) sockets.set(match[1]!, Number(fd))
    } catch {
      // Closed while we looked (the fd of the directory listing itself, for one).
    }
  }
  return sockets
}

/** Every socket in this network namespace, by inode. */
export const sockets = (): Map<string, SocketInfo> => {
  const byInode = new Map<string, SocketInfo>()
  const inet = (file: string, kind: "tcp" | "udp", family: "IPv4" | "IPv6") => {
    for (const line of readLines(file)) {
      const fields = line.trim().split(/\s+/)
      if (fields.length < 10 || fields[9] === "0") continue
      const [hex, port] = fields[1]!.split(":")
      byInode.set(fields[9]!, {
        kind,
        inode: fields[9]!,
        family,
        address: family === "IPv4" ? ipv4(hex!) : ipv6(hex!),
        port: parseInt(port!, 16),
        // TCP_LISTEN is 0A; an unconnected UDP socket is "closed" (07).
        listening: kind === "tcp" ? fields[3] === "0A" : fields[3] === "07"
      })
    }
  }
  inet("/proc/net/tcp", "tcp", "IPv4")
  inet("/proc/net/tcp6", "tcp", "IPv6")
  inet("/proc/net/udp", "udp", "IPv4")
  inet("/proc/net/udp6", "udp", "IPv6")
  for (const line of readLines("/proc/net/unix")) {
    const entry = unixEntry(line)
    if (entry !== undefined) byInode.set(entry.inode, entry)
  }
  return byInode
}

/**
 * One line of /proc/net/unix: `Num: RefCount Protocol Flags Type St Inode Path`. The path is
 * everything after the single space that follows the inode, spaces included (the kernel prints it
 * raw; an abstract name starts with `@`). A path holding a newline spans two lines and cannot be
 * read back; the line that does not parse is skipped.
 */
const unixEntry = (line: string): SocketInfo | undefined => {
  const match =
    /^\s*[0-9A-Fa-f]+:\s+[0-9A-Fa-f]+\s+[0-9A-Fa-f]+\s+([0-9A-Fa-f]+)\s+([0-9A-Fa-f]+)\s+[0-9A-Fa-f]+\s+(\d+)(?: (.*))?$/
      .exec(line)
  if (match === null) return undefined
  const [, flags, type, inode, path] = match
  return {
    kind: "unix",
    inode: inode!,
    path: path === undefined || path === "" ? undefined : path.startsWith("@") ? `\0${path.slice(1)}` : path,
    stream: type === "0001",
    listening: (parseInt(flags!, 16) & 0x10000) !== 0
  }
}

const readLines = (file: string): ReadonlyArray<string> => {
  try {
    return Fs.readFileSync(file, "utf8").split("\n").slice(1)
  } catch (error) {
    // A table the kernel lacks (no IPv6) is empty; anything else (EMFILE) must not pass for "no sockets".
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return []
    throw error
  }
}

/** /proc prints an IPv4 address as one little-endian 32-bit word in hex. */
const ipv4 = (hex: string): string => {
  const n = parseInt(hex, 16)
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24].join(".")
}

/** ...and an IPv6 address as four such words; the URL parser gives its canonical text. */
const ipv6 = (hex: string): string => {
  const groups: Array<string> = []
  for (let word = 0; word < 4; word++) {
    const bytes = hex.slice(word * 8, word * 8 + 8).match(/../g)!.reverse().join("")
    groups.push(bytes.slice(0, 4), bytes.slice(4, 8))
  }
  return new URL(`http://[${groups.join(":")}]/`).hostname.slice(1, -1)
}
