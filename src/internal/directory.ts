/**
 * Handover between unrelated processes through a directory (the tableroll
 * model), for `DirectoryUpgrader`.
 *
 *   <dir>/upgrade.lock  flock'd by the process taking over, until it is ready
 *   <dir>/owner.sock    served by the owner: the process that serves now
 *   <dir>/owner.pid     the owner's pid
 *
 * A starting process takes the lock, connects to owner.sock and checks that
 * the owner runs as its own user (SO_PEERCRED); the owner checks the same of
 * it and sends its listeners in one message (SCM_RIGHTS, with a JSON manifest).
 * The newcomer builds its servers on them, and at `ready` renames its own
 * owner.sock over the old one, writes owner.pid, says `ready` on the
 * connection and lets the lock go. The old owner's `exit` then completes.
 * Nobody at owner.sock (no file, or a refused connection: a dead owner) means
 * this process is the first owner.
 *
 * If the newcomer dies before `ready`, the old owner sees the connection close
 * and serves on (taking owner.sock back in case the newcomer had renamed its
 * own over it); the kernel drops the newcomer's lock. If the old owner dies
 * after sending, the newcomer has the sockets and carries on alone.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Ref from "effect/Ref"
import type * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import * as PidFile from "../PidFile.js"
import { DirectoryError, NotSupported, PidFileError } from "../UpgradeError.js"
import type { ExitReason, Upgrader } from "../Upgrader.js"
import * as Handles from "./handles.js"
import * as Native from "./native.js"
import * as Procfs from "./procfs.js"
import * as Protocol from "./protocol.js"
import type { Inherited } from "./registry.js"
import { Registry } from "./registry.js"

/** @internal */
export interface Options {
  readonly dir: string
  readonly timeout?: Duration.DurationInput | undefined
  readonly pidFile?: string | undefined
}

interface Offer {
  readonly ownerPid: number
  readonly generation: number
  readonly descriptors: ReadonlyArray<Protocol.TcpListener | Protocol.UnixListener>
}

/** The owner's offer, checked as the handover manifest is (no Schema before `ready`). */
const offerOf = (value: unknown): Offer => {
  const from = Protocol.fields(value, "")
  return {
    ownerPid: Protocol.integer(from.ownerPid, "ownerPid"),
    generation: Protocol.integer(from.generation, "generation"),
    descriptors: Protocol.list(from.descriptors, "descriptors", Protocol.listener)
  }
}

type State = "Starting" | "Ready" | "HandingOver" | "Upgraded" | "Stopped"

const code = (error: unknown) => (error as NodeJS.ErrnoException).code

class PeerError extends Error {}

/** Whether the pid in `path` is a live process other than this one. */
const ownerAlive = (path: string): boolean => {
  let pid: number
  try {
    pid = Number(Fs.readFileSync(path, "utf8").trim())
  } catch {
    return false
  }
  if (!Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid) return false
  try {
    process.kill(pid, 0)
  } catch (error) {
    return code(error) === "EPERM"
  }
  // A zombie answers signal 0 but serves nothing.
  return Procfs.processStat(pid)?.state !== "Z"
}

/** The directory must be ours and writable by nobody else: whoever can write there can take the sockets. */
const checkDirectory = (dir: string) =>
  Effect.suspend(() => {
    const fail = (detail: string) => Effect.fail(new DirectoryError({ path: dir, reason: "Permissions", detail }))
    let stat: Fs.Stats
    try {
      Fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
      stat = Fs.lstatSync(dir)
    } catch (error) {
      return fail(`cannot use the directory: ${(error as Error).message}`)
    }
    if (!stat.isDirectory()) return fail("is not a directory (a symlink is refused too)")
    const uid = process.geteuid?.() ?? stat.uid
    if (stat.uid !== uid) return fail(`is owned by uid ${stat.uid}, not by this process's uid ${uid}; chown it`)
    if ((stat.mode & 0o022) !== 0) {
      return fail(
        `is writable by its group or by everyone (mode ${(stat.mode & 0o777).toString(8)}); chmod go-w it`
      )
    }
    return Effect.void
  })

/** @internal */
export const make = Effect.fnUntraced(function*(options: Options) {
  const { addon, reason } = Native.load()
  if (addon === undefined) return yield* new NotSupported({ platform: process.platform, reason })
  const dir = Path.resolve(options.dir)
  yield* checkDirectory(dir)
  const timeout = Duration.decode(options.timeout ?? Duration.minutes(1))
  const lockPath = Path.join(dir, "upgrade.lock")
  const ownerPath = Path.join(dir, "owner.sock")
  const ownerPidPath = Path.join(dir, "owner.pid")
  const uid = process.geteuid?.() ?? 0
  const annotate = <A, E, R>(self: Effect.Effect<A, E, R>) =>
    Effect.annotateLogs(self, { package: "effect-tableflip", pid: process.pid, dir })

  // 1. The lock: one process takes over at a time. Polled: flock would block the event loop.
  const tryLock = Effect.try({
    try: () => addon.lock(lockPath),
    catch: (error) => new DirectoryError({ path: lockPath, reason: "Locked", detail: (error as Error).message })
  })
  const acquire: Effect.Effect<number, DirectoryError> = Effect.flatMap(
    tryLock,
    (fd) => fd !== null ? Effect.succeed(fd) : Effect.zipRight(Effect.sleep(Duration.millis(50)), acquire)
  )
  const lockFd = yield* acquire.pipe(
    Effect.timeoutFail({
      duration: timeout,
      onTimeout: () =>
        new DirectoryError({
          path: lockPath,
          reason: "Locked",
          detail: `another process has been taking over for ${Duration.format(timeout)}`
        })
    })
  )
  let lockHeld = true
  const releaseLock = () => {
    if (!lockHeld) return
    lockHeld = false
    Fs.closeSync(lockFd)
  }
  yield* Effect.addFinalizer(() => Effect.sync(releaseLock))

  // 2. The owner, if any, and what it hands over.
  type Asked =
    | {
      readonly _tag: "Offer"
      readonly fd: number
      readonly peer: { readonly pid: number }
      readonly offer: Offer
      readonly fds: ReadonlyArray<number>
    }
    | { readonly _tag: "Busy" }
    | { readonly _tag: "Nobody" }
  const ask = Effect.try({
    try: (): Asked => {
      let fd: number
      try {
        fd = addon.connect(ownerPath)
      } catch (error) {
        // No file, or a file nobody serves.
        if (code(error) === "ENOENT" || code(error) === "ECONNREFUSED") return { _tag: "Nobody" }
        throw error
      }
      let received: ReadonlyArray<number> = []
      try {
        const peer = addon.peerCred(fd)
        if (peer.uid !== uid) throw new PeerError(`the owner (pid ${peer.pid}) runs as uid ${peer.uid}, not ${uid}`)
        const message = addon.recvFds(fd, Duration.toMillis(timeout))
        received = message.fds
        // End of stream, nothing sent: the owner went away before it answered.
        if (message.data === "" && message.fds.length === 0) {
          Fs.closeSync(fd)
          return { _tag: "Nobody" }
        }
        if (message.data === "busy\n") {
          Fs.closeSync(fd)
          return { _tag: "Busy" }
        }
        const decoded = Protocol.check(JSON.parse(message.data), offerOf)
        if (Either.isLeft(decoded)) throw new Error(`the owner's manifest is malformed: ${decoded.left}`)
        if (decoded.right.descriptors.length !== message.fds.length) {
          throw new Error(`the owner named ${decoded.right.descriptors.length} sockets and sent ${message.fds.length}`)
        }
        return { _tag: "Offer", fd, peer, offer: decoded.right, fds: message.fds }
      } catch (error) {
        for (const received_ of [fd, ...received]) Fs.closeSync(received_)
        throw error
      }
    },
    catch: (error) =>
      new DirectoryError({
        path: ownerPath,
        reason: error instanceof PeerError ? "Peer" : "Handover",
        detail: error instanceof Error ? error.message : String(error)
      })
  })
  // A live owner that is busy (handing over to another, draining) or whose socket is
  // momentarily gone is waited for; only a dead one makes this process the first owner.
  const find: Effect.Effect<Asked, DirectoryError> = Effect.flatMap(ask, (asked) => {
    if (asked._tag === "Offer") return Effect.succeed(asked)
    if (asked._tag === "Nobody" && !ownerAlive(ownerPidPath)) return Effect.succeed(asked)
    return Effect.zipRight(Effect.sleep(Duration.millis(100)), find)
  })
  const found = yield* find.pipe(
    Effect.timeoutFail({
      duration: timeout,
      onTimeout: () =>
        new DirectoryError({
          path: ownerPath,
          reason: "Handover",
          detail: `the owner named in ${ownerPidPath} is alive but did not hand over within ${Duration.format(timeout)}`
        })
    })
  )
  let connection: number | undefined
  let inherited: ReadonlyArray<Inherited> = []
  let ownerPid: number | undefined
  let generation = 1
  if (found._tag === "Offer") {
    connection = found.fd
    ownerPid = found.peer.pid
    generation = found.offer.generation + 1
    inherited = found.offer.descriptors.map((descriptor, i) => ({ descriptor, fd: found.fds[i]! }))
  }

  // A newcomer that never gets to `ready` closes its end, so the owner serves on at once.
  yield* Effect.addFinalizer(() =>
    Effect.sync(() => {
      if (connection !== undefined && !readied) Fs.closeSync(connection)
    })
  )

  const state = yield* Ref.make<State>("Starting")
  const exitReason = yield* Deferred.make<ExitReason>()
  const predecessorGone = yield* Deferred.make<void>()
  if (connection === undefined) Deferred.unsafeDone(predecessorGone, Effect.void)
  let upgraded = false
  let readied = false
  const registry = new Registry(inherited, {
    mayUnlink: (boundHere) => !upgraded && (boundHere || readied || connection === undefined)
  })

  // 3. Serving owner.sock once ready: a temporary name renamed over the old one, so the path
  // always leads to a live owner.
  let ownerInode: { readonly dev: number; readonly ino: number } | undefined
  let server: Net.Server | undefined
  const claimOwnerSocket = Effect.async<void, DirectoryError>((resume) => {
    const temp = `${ownerPath}.${process.pid}`
    Fs.rmSync(temp, { force: true })
    const next = Net.createServer({ pauseOnConnect: true }, onConnection)
    next.once(
      "error",
      (error) => resume(Effect.fail(new DirectoryError({ path: ownerPath, reason: "Handover", detail: error.message })))
    )
    next.listen(temp, () => {
      try {
        Fs.chmodSync(temp, 0o600)
        Fs.renameSync(temp, ownerPath)
        const stat = Fs.statSync(ownerPath)
        ownerInode = { dev: stat.dev, ino: stat.ino }
      } catch (error) {
        next.close()
        return resume(
          Effect.fail(new DirectoryError({ path: ownerPath, reason: "Handover", detail: (error as Error).message }))
        )
      }
      server?.close()
      server = next
      resume(Effect.void)
    })
  })

  const stillOurs = () => {
    try {
      const stat = Fs.statSync(ownerPath)
      return ownerInode !== undefined && stat.ino === ownerInode.ino && stat.dev === ownerInode.dev
    } catch {
      return false
    }
  }

  // Handovers in flight: each has a deadline, and a stopping owner ends them.
  const inFlight = new Set<Net.Socket>()

  function onConnection(socket: Net.Socket) {
    socket.on("error", () => {})
    const fd = Handles.socketFd(socket)
    let peer: { readonly pid: number; readonly uid: number } | undefined
    try {
      peer = fd === undefined ? undefined : addon!.peerCred(fd)
    } catch {
      peer = undefined
    }
    if (peer === undefined || peer.uid !== uid) {
      Effect.runFork(
        Effect.logWarning(`refused a takeover by pid ${peer?.pid} (uid ${peer?.uid}): not uid ${uid}`).pipe(annotate)
      )
      return socket.destroy()
    }
    const newcomer = peer
    Effect.runFork(
      Effect.gen(function*() {
        const current = yield* Ref.modify(state, (s): [State, State] => [s, s === "Ready" ? "HandingOver" : s])
        if (current !== "Ready") {
          // Alive but not free: the newcomer waits and asks again rather than taking us for dead.
          socket.end("busy\n")
          return
        }
        const listeners = registry.listeners().filter((l) =>
          l.descriptor.kind === "tcp" || l.descriptor.kind === "unix"
        )
        if (listeners.length < registry.listeners().length) {
          yield* Effect.logWarning("UDP sockets do not go through a directory handover; the next process binds its own")
        }
        const sent = Either.try(() =>
          addon!.sendFds(
            fd!,
            listeners.map((l) => Handles.handleFd(l.handle)!),
            JSON.stringify({ ownerPid: process.pid, generation, descriptors: listeners.map((l) => l.descriptor) })
          )
        )
        if (Either.isLeft(sent)) {
          yield* Ref.set(state, "Ready")
          socket.destroy()
          return yield* Effect.logWarning(`the handover to pid ${newcomer.pid} failed: ${String(sent.left)}`)
        }
        yield* Effect.logInfo(`handed the listeners to pid ${newcomer.pid}; waiting for it to be ready`)
        inFlight.add(socket)
        // A newcomer that hangs before `ready` must not hold this owner (and the lock) forever.
        const deadline = setTimeout(() => socket.destroy(), Duration.toMillis(timeout))
        deadline.unref()
        let answer = ""
        socket.setEncoding("utf8")
        socket.on("data", (chunk: string) => {
          answer += chunk
          if (!answer.includes("ready\n") || upgraded) return
          upgraded = true
          clearTimeout(deadline)
          inFlight.delete(socket)
          // Held open, but not keeping this process alive: its close at exit is how the new
          // owner learns this one is gone.
          socket.unref()
          Effect.runFork(
            Ref.set(state, "Upgraded").pipe(
              Effect.zipRight(Deferred.succeed(exitReason, "upgraded")),
              Effect.zipRight(Effect.logInfo(`pid ${newcomer.pid} is ready and owns ${dir}; stepping down`)),
              annotate
            )
          )
        })
        socket.once("close", () => {
          clearTimeout(deadline)
          inFlight.delete(socket)
          if (upgraded) return
          // It died (or timed out) before `ready`: serve on, and take owner.sock back if it had taken it.
          Effect.runFork(
            Effect.gen(function*() {
              const wasHandingOver = yield* Ref.modify(state, (s): [boolean, State] => [
                s === "HandingOver",
                s === "HandingOver" ? "Ready" : s
              ])
              if (!wasHandingOver) return
              yield* Effect.logWarning(`pid ${newcomer.pid} went away before it was ready; serving on`)
              if (!stillOurs()) yield* claimOwnerSocket
            }).pipe(Effect.catchAll((error) => Effect.logError(error.message)), annotate)
          )
        })
        socket.resume()
      }).pipe(annotate)
    )
  }

  const ready = Effect.gen(function*() {
    if (readied) return
    if (options.pidFile !== undefined) yield* PidFile.write(options.pidFile)
    registry.closeUnclaimed()
    readied = true
    yield* claimOwnerSocket.pipe(
      Effect.mapError((error) => new PidFileError({ path: error.path, cause: error.message }))
    )
    yield* PidFile.write(ownerPidPath)
    yield* Ref.update(state, (s): State => s === "Starting" ? "Ready" : s)
    if (connection !== undefined) {
      const fd = connection
      try {
        Fs.writeSync(fd, "ready\n")
      } catch {
        // The old owner is gone already.
      }
      // From here on the connection only tells when the old owner has exited.
      const watch = new Net.Socket({ fd, readable: true, writable: false })
      watch.on("error", () => {})
      const gone = () => Deferred.unsafeDone(predecessorGone, Effect.void)
      watch.on("end", gone)
      watch.on("close", gone)
      watch.resume()
      watch.unref()
    }
    releaseLock()
    yield* Effect.logInfo(ownerPid === undefined ? "ready: first owner" : `ready: took over from pid ${ownerPid}`)
  }).pipe(annotate)

  const stop = Effect.gen(function*() {
    const previous = yield* Ref.getAndUpdate(state, (s): State => s === "Upgraded" ? s : "Stopped")
    if (previous === "Upgraded" || previous === "Stopped") return
    yield* Deferred.succeed(exitReason, "stopped")
  })

  yield* Effect.addFinalizer(() =>
    Effect.zipRight(
      stop,
      Effect.sync(() => {
        server?.close()
        for (const socket of inFlight) socket.destroy()
        // Unlink only what is still ours, and never after handing over: a successor renamed its own
        // socket there (and inode numbers get reused).
        if (!upgraded && stillOurs()) Fs.rmSync(ownerPath, { force: true })
      })
    )
  )

  const upgrader: Upgrader["Type"] = {
    pid: process.pid,
    generation,
    hasParent: connection !== undefined,
    ready,
    upgrade: Effect.fail(
      new NotSupported({
        platform: process.platform,
        reason: "a DirectoryUpgrader process does not start its successor: start the next one " +
          "(another unit instance, a new release) and it takes over through the directory"
      })
    ),
    exit: Deferred.await(exitReason),
    stop,
    waitForParent: Deferred.await(predecessorGone),
    offerState: () => Effect.void as Effect.Effect<void, never, Scope.Scope>,
    inheritedState: undefined,
    unready: () => Effect.void
  }
  return { upgrader, registry }
})
