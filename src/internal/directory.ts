/**
 * Handover between unrelated processes through a directory (the tableroll
 * model), for `DirectoryUpgrader`.
 *
 *   <dir>/upgrade.lock  flock'd by the process taking over, until it is ready
 *   <dir>/owner.sock    served by the owner: the process that serves now
 *   <dir>/owner.pid     the owner's pid, for people and tools
 *   <dir>/owner.start   "<pid> <start time>": the owner's pid and its start time in /proc/<pid>/stat,
 *                       which together name one process (a pid alone names any later process that
 *                       reuses it)
 *
 * A starting process takes the lock, connects to owner.sock and checks that
 * the owner runs as its own user (SO_PEERCRED); the owner checks the same of
 * it and sends its listeners as one frame: a header line `offer <fds> <bytes>`,
 * then that many bytes of JSON manifest, with the fds riding on the first
 * bytes (SCM_RIGHTS, at most 253 per message, so more go in batches). A busy
 * owner answers `busy` instead. The newcomer reads the frame in bounded
 * reads, never more than the header announces, and the header may announce no
 * more than 4 KiB of manifest per socket.
 * The newcomer builds its servers on them, and at `ready` renames its own
 * owner.sock over the old one, writes owner.pid, says `ready` on the
 * connection and lets the lock go. The old owner's `exit` then completes.
 * Nobody at owner.sock (no file, or a refused connection: a dead owner) means
 * this process is the first owner, unless owner.start names a live process of
 * this user that started when it says: that owner is waited for.
 *
 * Nothing here blocks the event loop: connect does not wait (an owner whose
 * queue is full is retried), the wait for the owner's answer runs on a worker
 * thread in slices, and the whole search has the caller's deadline and is
 * interruptible (SIGTERM ends a waiting newcomer at once).
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
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import * as Ref from "effect/Ref"
import type * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import * as PidFile from "../PidFile.js"
import { DirectoryError, NotSupported, PidFileError } from "../UpgradeError.js"
import type { ExitReason, Upgrader } from "../Upgrader.js"
import * as Handles from "./handles.js"
import * as Log from "./log.js"
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

/** The kernel's limit of fds in one message (SCM_MAX_FD): more travel in batches. */
const MAX_FDS_PER_MESSAGE = 253
/** The longest header line: `offer <fds> <bytes>` or `busy`. */
const MAX_HEADER = 64
/** The most manifest a header may announce, per socket (a descriptor takes a few hundred bytes). */
const MAX_MANIFEST_PER_FD = 4096
/** How long one wait for the owner's answer lasts on the worker thread before the loop looks again. */
const WAIT_SLICE_MS = 250
/** The most a newcomer may send before `ready\n`. */
const MAX_ANSWER = 64

const closeQuietly = (fd: number) => {
  try {
    Fs.closeSync(fd)
  } catch {
    // Closed already.
  }
}

/**
 * The pid in `owner.pid` if it is, provably, the owner that wrote it (`PidFile.proven`: its start
 * record `owner.start` names a live process with that start time) and runs as this user. Anything
 * else (a missing or malformed record, a dead pid, a pid reused by another process after a crash,
 * another user's process or record) is stale.
 */
const provenOwner = (ownerPidPath: string, uid: number): number | undefined => {
  const pid = PidFile.proven(ownerPidPath)
  return pid !== undefined && pid !== process.pid && Procfs.processUid(pid) === uid ? pid : undefined
}

/**
 * The directory must be ours and writable by nobody else: whoever can write there can take the
 * sockets. So must every directory above it (as written, and as symlinks resolve): whoever may
 * rename an ancestor can put a directory of their own in its place. An ancestor passes if it
 * belongs to this user or root and is not writable by group or others, unless its sticky bit is
 * set (as on /tmp: others may add entries there but not rename or remove ours).
 */
const checkDirectory = (dir: string) =>
  Effect.suspend(() => {
    const fail = (path: string, detail: string) =>
      Effect.fail(new DirectoryError({ path, reason: "Permissions", detail }))
    const uid = process.geteuid?.() ?? 0
    let stat: Fs.Stats
    let real: string
    try {
      Fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
      stat = Fs.lstatSync(dir)
      real = Fs.realpathSync(dir)
    } catch (error) {
      return fail(dir, `cannot use the directory: ${(error as Error).message}`)
    }
    if (!stat.isDirectory()) return fail(dir, "is not a directory (a symlink is refused too)")
    if (stat.uid !== uid) return fail(dir, `is owned by uid ${stat.uid}, not by this process's uid ${uid}; chown it`)
    if ((stat.mode & 0o022) !== 0) {
      return fail(
        dir,
        `is writable by its group or by everyone (mode ${(stat.mode & 0o777).toString(8)}); chmod go-w it`
      )
    }
    const ancestors = new Set<string>()
    for (const start of [dir, real]) {
      for (let path = Path.dirname(start); !ancestors.has(path); path = Path.dirname(path)) ancestors.add(path)
    }
    for (const ancestor of ancestors) {
      let above: Fs.Stats
      try {
        above = Fs.statSync(ancestor)
      } catch (error) {
        return fail(ancestor, `cannot check a directory above ${dir}: ${(error as Error).message}`)
      }
      if (above.uid !== uid && above.uid !== 0) {
        return fail(
          ancestor,
          `is owned by uid ${above.uid}, neither this process's uid ${uid} nor root, and could replace ${dir}; ` +
            "put the directory under one owned by this user or root"
        )
      }
      if ((above.mode & 0o022) !== 0 && (above.mode & 0o1000) === 0) {
        return fail(
          ancestor,
          `is writable by its group or by everyone without the sticky bit (mode ${
            (above.mode & 0o7777).toString(8)
          }), so others could replace ${dir}; chmod go-w (or +t) it`
        )
      }
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
  const ownerStartPath = PidFile.startPath(ownerPidPath)
  const uid = process.geteuid?.() ?? 0
  Log.identify(`directory ${dir}`)
  // Effects started from the server's callbacks run in this layer's runtime (the app's logger) and end with it.
  const runFork = yield* FiberSet.makeRuntime<never>()

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
    | { readonly _tag: "Busy"; readonly pid: number }
    | { readonly _tag: "Full" }
    | { readonly _tag: "Nobody" }
  type Attempt = number | { readonly _tag: "Full" } | { readonly _tag: "Nobody" }

  // What the search waits for, named when the deadline comes.
  let waitingFor = `an answer from the owner at ${ownerPath}`
  let warnedSlow = false

  // One connect, which never waits: no file or nobody serving it is nobody; a full queue is retried.
  const connectOnce = Effect.try({
    try: (): Attempt => {
      try {
        return addon.connect(ownerPath)
      } catch (error) {
        if (code(error) === "ENOENT" || code(error) === "ECONNREFUSED") return { _tag: "Nobody" }
        if (code(error) === "EAGAIN") return { _tag: "Full" }
        throw error
      }
    },
    catch: (error) => error as Error
  })

  // One read of at most `max` bytes; the fds it brings are in `received` at once, for the caller to close.
  const readSome = (fd: number, max: number, received: Array<number>): Effect.Effect<Buffer, Error> =>
    Effect.flatMap(
      Effect.try({
        try: () => {
          const got = addon.recvFds(fd, max)
          if (got !== null) received.push(...got.fds)
          if (got?.truncated === true) {
            throw new Error(
              `fds the owner sent were dropped (MSG_CTRUNC): this process may be at its fd limit (ulimit -n)`
            )
          }
          return got?.data
        },
        catch: (error) => error as Error
      }),
      (data) =>
        data !== undefined ? Effect.succeed(data) : Effect.zipRight(
          // Waits off the event loop, a slice at a time: an interruption (the timeout, SIGTERM) is never held up.
          Effect.tryPromise({ try: () => addon.waitReadable(fd, WAIT_SLICE_MS), catch: (error) => error as Error }),
          readSome(fd, max, received)
        )
    )

  // The owner's answer on a connection: `busy`, or an offer frame read to its announced end.
  const readAnswer = (fd: number, peer: { readonly pid: number }, received: Array<number>) =>
    Effect.gen(function*() {
      let head = Buffer.alloc(0)
      let newline = -1
      while (newline === -1) {
        const data = yield* readSome(fd, MAX_HEADER - head.length, received)
        if (data.length === 0) {
          // End of stream before a whole header: the owner went away before it answered.
          if (head.length === 0 && received.length === 0) return { _tag: "Nobody" } as const
          return yield* Effect.fail(new Error(`the owner (pid ${peer.pid}) closed the connection mid-answer`))
        }
        head = Buffer.concat([head, data])
        newline = head.indexOf(10)
        if (newline === -1 && head.length >= MAX_HEADER) {
          return yield* Effect.fail(
            new Error(
              `the owner (pid ${peer.pid}) answered without a header line (${
                JSON.stringify(head.subarray(0, 24).toString("latin1"))
              }...): it runs another version of effect-tableflip; upgrade both to this one`
            )
          )
        }
      }
      const header = head.subarray(0, newline).toString("latin1")
      if (header === "busy") return { _tag: "Busy", pid: peer.pid } as const
      const match = /^offer (\d{1,6}) (\d{1,12})$/.exec(header)
      if (match === null) {
        return yield* Effect.fail(new Error(`the owner sent an unknown header ${JSON.stringify(header)}`))
      }
      const count = Number(match[1])
      const bytes = Number(match[2])
      const limit = MAX_MANIFEST_PER_FD * (count + 1)
      if (bytes > limit) {
        return yield* Effect.fail(
          new Error(`the owner announced ${bytes} bytes of manifest for ${count} sockets, over the limit of ${limit}`)
        )
      }
      const body: Array<Buffer> = [head.subarray(newline + 1)]
      let have = body[0]!.length
      while (have < bytes) {
        const data = yield* readSome(fd, Math.min(bytes - have, 1 << 20), received)
        if (data.length === 0) {
          return yield* Effect.fail(
            new Error(`the owner (pid ${peer.pid}) closed the connection after ${have} of ${bytes} manifest bytes`)
          )
        }
        body.push(data)
        have += data.length
      }
      if (have > bytes) return yield* Effect.fail(new Error(`the owner sent more than the ${bytes} bytes it announced`))
      if (received.length !== count) {
        return yield* Effect.fail(new Error(`the owner announced ${count} sockets and sent ${received.length}`))
      }
      const parsed = Either.try(() => JSON.parse(Buffer.concat(body).toString("utf8")) as unknown)
      if (Either.isLeft(parsed)) {
        return yield* Effect.fail(new Error(`the owner's manifest is not JSON: ${String(parsed.left)}`))
      }
      const decoded = Protocol.check(parsed.right, offerOf)
      if (Either.isLeft(decoded)) {
        return yield* Effect.fail(new Error(`the owner's manifest is malformed: ${decoded.left}`))
      }
      if (decoded.right.descriptors.length !== count) {
        return yield* Effect.fail(
          new Error(`the owner named ${decoded.right.descriptors.length} sockets and sent ${count}`)
        )
      }
      return { _tag: "Offer", fd, peer, offer: decoded.right, fds: [...received] } as const
    })

  // Connects once and reads the answer; every fd is closed unless it comes out in an offer,
  // whether this fails, is interrupted or finds the owner busy.
  const ask: Effect.Effect<Asked, DirectoryError> = Effect.acquireUseRelease(
    connectOnce,
    (attempt): Effect.Effect<Asked, Error> => {
      if (typeof attempt !== "number") return Effect.succeed(attempt)
      const received: Array<number> = []
      return Effect.try({ try: () => addon.peerCred(attempt), catch: (error) => error as Error }).pipe(
        Effect.flatMap((peer) => {
          if (peer.uid !== uid) {
            return Effect.fail(new PeerError(`the owner (pid ${peer.pid}) runs as uid ${peer.uid}, not ${uid}`))
          }
          waitingFor = `an answer from the owner (pid ${peer.pid}), connected at ${ownerPath}`
          // An owner that accepts nothing (stopped, hung) still takes connections into its queue: say so once.
          const slow = warnedSlow ? Effect.void : Log.warning(
            `the owner (pid ${peer.pid}) has not answered within 1s; waiting for up to ${Duration.format(timeout)}`
          ).pipe(
            Effect.zipRight(Effect.sync(() => (warnedSlow = true))),
            Effect.delay(Duration.seconds(1))
          )
          return Effect.flatMap(
            Effect.fork(slow),
            (warning) => readAnswer(attempt, peer, received).pipe(Effect.ensuring(Fiber.interrupt(warning)))
          )
        }),
        Effect.onExit((exit) =>
          Effect.sync(() => {
            if (Exit.isSuccess(exit) && exit.value._tag === "Offer") return
            for (const fd of received) closeQuietly(fd)
          })
        )
      )
    },
    (attempt, exit) =>
      Effect.sync(() => {
        if (typeof attempt === "number" && !(Exit.isSuccess(exit) && exit.value._tag === "Offer")) {
          closeQuietly(attempt)
        }
      })
  ).pipe(
    Effect.mapError((error) =>
      new DirectoryError({
        path: ownerPath,
        reason: error instanceof PeerError ? "Peer" : "Handover",
        detail: error.message
      })
    )
  )

  // A live owner that is busy (handing over to another, draining), whose queue is full or whose
  // socket is momentarily gone is waited for; only one that is provably gone makes this process
  // the first owner. What it waits for names the obstacle when the deadline comes.
  let warnedFull = false
  const find: Effect.Effect<Asked, DirectoryError> = Effect.flatMap(ask, (asked) => {
    switch (asked._tag) {
      case "Offer":
        return Effect.succeed(asked)
      case "Busy":
        waitingFor = `the owner (pid ${asked.pid}) to finish another handover or its drain: it answered busy`
        return Effect.zipRight(Effect.sleep(Duration.millis(100)), find)
      case "Full": {
        waitingFor = `a place in the owner's connection queue at ${ownerPath}: it stayed full (EAGAIN), ` +
          "so the owner is not accepting connections (hung, or stopped with SIGSTOP?)"
        const warn = warnedFull ? Effect.void : Log.warning(
          `the owner's connection queue at ${ownerPath} is full (EAGAIN); retrying for up to ${
            Duration.format(timeout)
          }`
        )
        warnedFull = true
        return warn.pipe(Effect.zipRight(Effect.sleep(Duration.millis(50))), Effect.zipRight(find))
      }
      case "Nobody": {
        const live = provenOwner(ownerPidPath, uid)
        if (live === undefined) return Effect.succeed(asked)
        waitingFor = `the owner (pid ${live}, alive as ${ownerStartPath} records it) to answer at ${ownerPath}`
        return Effect.zipRight(Effect.sleep(Duration.millis(100)), find)
      }
    }
  })
  const found = yield* find.pipe(
    Effect.timeoutFail({
      duration: timeout,
      onTimeout: () =>
        new DirectoryError({
          path: ownerPath,
          reason: "Handover",
          detail: `no handover within ${Duration.format(timeout)}: waited for ${waitingFor}`
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

  /**
   * The offer frame with the listeners' fds: each batch of at most 253 fds rides on a byte of its
   * own, the last on as much of the rest as the socket takes at once; Node writes what is left
   * (after those bytes, in order) as the newcomer reads.
   */
  const sendOffer = (socket: Net.Socket, fd: number, fds: ReadonlyArray<number>, frame: Buffer) => {
    let offset = 0
    for (let i = 0; i < fds.length; i += MAX_FDS_PER_MESSAGE) {
      const last = i + MAX_FDS_PER_MESSAGE >= fds.length
      offset += addon.sendFds(
        fd,
        fds.slice(i, i + MAX_FDS_PER_MESSAGE),
        frame.subarray(offset, last ? frame.length : offset + 1)
      )
    }
    if (offset < frame.length) socket.write(frame.subarray(offset))
  }

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
      runFork(
        Log.warning(`refused a takeover by pid ${peer?.pid} (uid ${peer?.uid}): not uid ${uid}`)
      )
      return socket.destroy()
    }
    const newcomer = peer
    runFork(
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
          yield* Log.warning("UDP sockets do not go through a directory handover; the next process binds its own")
        }
        const json = Buffer.from(
          JSON.stringify({ ownerPid: process.pid, generation, descriptors: listeners.map((l) => l.descriptor) }),
          "utf8"
        )
        const sent = Either.try(() =>
          sendOffer(
            socket,
            fd!,
            listeners.map((l) => Handles.handleFd(l.handle)!),
            Buffer.concat([Buffer.from(`offer ${listeners.length} ${json.length}\n`, "latin1"), json])
          )
        )
        if (Either.isLeft(sent)) {
          yield* Ref.set(state, "Ready")
          socket.destroy()
          return yield* Log.warning(`the handover to pid ${newcomer.pid} failed: ${String(sent.left)}`)
        }
        yield* Log.info(`handed the listeners to pid ${newcomer.pid}; waiting for it to be ready`)
        inFlight.add(socket)
        // A newcomer that hangs before `ready` must not hold this owner (and the lock) forever.
        const deadline = setTimeout(() => socket.destroy(), Duration.toMillis(timeout))
        deadline.unref()
        // The newcomer says nothing but `ready\n`: more than a few bytes without it ends the handover.
        let answer = ""
        socket.setEncoding("utf8")
        socket.on("data", (chunk: string) => {
          if (upgraded) return
          answer += chunk
          if (!answer.includes("ready\n")) {
            if (answer.length > MAX_ANSWER) {
              runFork(
                Log.warning(
                  `pid ${newcomer.pid} sent ${answer.length} bytes that are not "ready"; dropped it`
                )
              )
              socket.destroy()
            }
            return
          }
          upgraded = true
          clearTimeout(deadline)
          inFlight.delete(socket)
          // Held open, but not keeping this process alive: its close at exit is how the new
          // owner learns this one is gone.
          socket.unref()
          runFork(
            Ref.set(state, "Upgraded").pipe(
              Effect.zipRight(Deferred.succeed(exitReason, "upgraded")),
              Effect.zipRight(Log.info(`pid ${newcomer.pid} is ready and owns ${dir}; stepping down`))
            )
          )
        })
        socket.once("close", () => {
          clearTimeout(deadline)
          inFlight.delete(socket)
          if (upgraded) return
          // It died (or timed out) before `ready`: serve on, and take owner.sock back if it had taken it.
          runFork(
            Effect.gen(function*() {
              const wasHandingOver = yield* Ref.modify(state, (s): [boolean, State] => [
                s === "HandingOver",
                s === "HandingOver" ? "Ready" : s
              ])
              if (!wasHandingOver) return
              yield* Log.warning(`pid ${newcomer.pid} went away before it was ready; serving on`)
              if (!stillOurs()) yield* claimOwnerSocket
              // It may have recorded itself as the owner before it died.
              yield* recordOwner
            }).pipe(Effect.catchAll((error) => Log.error(error.message)))
          )
        })
        socket.resume()
      })
    )
  }

  // owner.start (pid and start time: the proof a live pid is still the owner), then owner.pid.
  const recordOwner = PidFile.write(ownerPidPath)

  const ready = Effect.gen(function*() {
    if (readied) return
    if (options.pidFile !== undefined) yield* PidFile.write(options.pidFile)
    registry.closeUnclaimed()
    readied = true
    yield* claimOwnerSocket.pipe(
      Effect.mapError((error) => new PidFileError({ path: error.path, cause: error.message }))
    )
    yield* recordOwner
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
    yield* Log.info(ownerPid === undefined ? "ready: first owner" : `ready: took over from pid ${ownerPid}`)
  })

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

  const startsNoSuccessor = Effect.fail(
    new NotSupported({
      platform: process.platform,
      reason: "a DirectoryUpgrader process does not start its successor: start the next one " +
        "(another unit instance, a new release) and it takes over through the directory"
    })
  )
  const upgrader: Upgrader["Type"] = {
    pid: process.pid,
    generation,
    hasParent: connection !== undefined,
    ready,
    upgrade: startsNoSuccessor,
    prepare: startsNoSuccessor,
    exit: Deferred.await(exitReason),
    stop,
    waitForParent: Deferred.await(predecessorGone),
    offerState: () => Effect.void as Effect.Effect<void, never, Scope.Scope>,
    inheritedState: undefined,
    unready: () => Effect.void
  }
  return { upgrader, registry }
})
