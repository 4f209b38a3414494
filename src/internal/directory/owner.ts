/**
 * The owner's side: serve owner.sock, and hand the listeners to a newcomer
 * that connects (as this user) while the state is `Serving`.
 *
 * owner.sock is always a live owner's: a new one is listened on under a
 * temporary name and renamed over the path. A newcomer gets one offer frame
 * (the fds riding on its first bytes, at most 253 per message) and must answer
 * `ready\n` within the timeout; if it closes the connection first, this owner
 * serves on and takes owner.sock back in case the newcomer had renamed its
 * own over it.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Ref from "effect/Ref"
import * as Fs from "node:fs"
import * as Net from "node:net"
import { DirectoryError } from "../../UpgradeError.js"
import type { ExitReason } from "../../Upgrader.js"
import * as Fx from "../fx.js"
import * as Handles from "../handles.js"
import * as Log from "../log.js"
import type * as Native from "../native.js"
import type { Registry } from "../registry.js"
import * as Codec from "./codec.js"
import { type Paths, recordOwner } from "./files.js"
import type { Machine, Newcomer } from "./state.js"

/** Runs an effect started from a Node callback in the layer's runtime (`FiberSet.makeRuntime`). */
export type RunFork = <A, E>(effect: Effect.Effect<A, E>) => unknown

/** What the owner's side needs of the rest. */
export interface Deps {
  readonly addon: Native.Addon
  readonly paths: Paths
  readonly timeout: Duration.Duration
  readonly machine: Machine
  readonly registry: Registry
  /** This process's generation, which the next one counts on from. */
  readonly generation: number
  /** Completed with "upgraded" when a newcomer is ready. */
  readonly exitReason: Deferred.Deferred<ExitReason>
  readonly runFork: RunFork
}

/** owner.sock as this process serves it. */
export interface Owner {
  /** Serves a fresh owner.sock renamed over the path (at `ready`; again to take it back). */
  readonly claim: Effect.Effect<void, DirectoryError>
  /** Stops serving; unlinks owner.sock if it is still the one this process renamed there. */
  readonly close: (unlink: boolean) => Effect.Effect<void>
}

/** The socket this process serves at owner.sock, and the inode it renamed there. */
interface Claimed {
  readonly server: Net.Server
  readonly dev: number
  readonly ino: number
}

/** @internal */
export const make = (deps: Deps): Effect.Effect<Owner> =>
  Effect.map(Ref.make<Claimed | undefined>(undefined), (claimed) => {
    const stillOurs = Effect.map(Ref.get(claimed), (current) => {
      try {
        const stat = Fs.statSync(deps.paths.owner)
        return current !== undefined && stat.ino === current.ino && stat.dev === current.dev
      } catch {
        return false
      }
    })
    const owner: Owner = {
      claim: Effect.flatMap(
        listen(deps.paths.owner, (socket) => onConnection(deps, owner, stillOurs, socket)),
        (next) => Effect.map(Ref.getAndSet(claimed, next), (previous) => previous?.server.close())
      ),
      close: (unlink) =>
        Effect.flatMap(Ref.get(claimed), (current) =>
          Effect.flatMap(stillOurs, (ours) =>
            Effect.sync(() => {
              current?.server.close()
              // Never after handing over: a successor renamed its own socket there (and inode numbers get reused).
              if (unlink && ours) Fs.rmSync(deps.paths.owner, { force: true })
            })))
    }
    return owner
  })

/** A server on a temporary name, renamed over `path`: the path always leads to a live owner. */
const listen = (path: string, onConnection: (socket: Net.Socket) => void) =>
  Fx.callback<Claimed, DirectoryError>((resume) => {
    const fail = (error: Error) =>
      resume(Effect.fail(new DirectoryError({ path, reason: "Handover", detail: error.message })))
    const temp = `${path}.${process.pid}`
    Fs.rmSync(temp, { force: true })
    const next = Net.createServer({ pauseOnConnect: true }, onConnection)
    next.once("error", fail)
    next.listen(temp, () => {
      try {
        Fs.chmodSync(temp, 0o600)
        Fs.renameSync(temp, path)
        const stat = Fs.statSync(path)
        resume(Effect.succeed({ server: next, dev: stat.dev, ino: stat.ino }))
      } catch (error) {
        next.close()
        fail(error as Error)
      }
    })
  })

/** A Node callback: refuses another user's process at once, hands over in the layer's runtime. */
const onConnection = (deps: Deps, owner: Owner, stillOurs: Effect.Effect<boolean>, socket: Net.Socket) => {
  socket.on("error", () => {})
  const fd = Handles.socketFd(socket)
  const uid = process.geteuid?.() ?? 0
  const peer = fd === undefined ? undefined : Fx.matchResult(Fx.tryResult(() => deps.addon.peerCred(fd)), {
    onSuccess: (cred) => cred,
    onFailure: () => undefined
  })
  if (fd === undefined || peer === undefined || peer.uid !== uid) {
    deps.runFork(Log.warning(`refused a takeover by pid ${peer?.pid} (uid ${peer?.uid}): not uid ${uid}`))
    return socket.destroy()
  }
  deps.runFork(handOver(deps, owner, stillOurs, { pid: peer.pid, socket }, fd))
}

/** Offers the listeners to `newcomer` if this owner is serving (else `busy`), then waits for its `ready`. */
const handOver = Effect.fnUntraced(
  function*(deps: Deps, owner: Owner, stillOurs: Effect.Effect<boolean>, newcomer: Newcomer, fd: number) {
    const { registry, machine } = deps
    if (Fx.isFailure(machine.step({ _tag: "Offered", newcomer }))) {
      // Alive but not free: the newcomer waits and asks again rather than taking us for dead.
      newcomer.socket.end(Codec.BUSY)
      return
    }
    const listeners = registry.listeners().filter((l) => l.descriptor.kind === "tcp" || l.descriptor.kind === "unix")
    if (listeners.length < registry.listeners().length) {
      yield* Log.warning("UDP sockets do not go through a directory handover; the next process binds its own")
    }
    const frame = Codec.encodeOffer({
      ownerPid: process.pid,
      generation: deps.generation,
      descriptors: listeners.map((l) => l.descriptor as Codec.Offer["descriptors"][number])
    })
    const fds = listeners.map((l) => Handles.handleFd(l.handle)!)
    const sent = Fx.tryResult(() => sendOffer(deps.addon, newcomer.socket, fd, fds, frame))
    if (Fx.isFailure(sent)) {
      machine.step({ _tag: "Gone", newcomer })
      newcomer.socket.destroy()
      return yield* Log.warning(`the handover to pid ${newcomer.pid} failed: ${String(Fx.failureOf(sent))}`)
    }
    yield* Log.info(`handed the listeners to pid ${newcomer.pid}; waiting for it to be ready`)
    awaitReady(deps, newcomer, {
      ready: onReady(deps, newcomer),
      gone: onGone(deps, owner, stillOurs, newcomer)
    })
  }
)

/**
 * The offer frame with the listeners' fds: each batch of at most 253 fds rides on a byte of its
 * own, the last on as much of the rest as the socket takes at once; Node writes what is left
 * (after those bytes, in order) as the newcomer reads.
 */
const sendOffer = (
  addon: Native.Addon,
  socket: Net.Socket,
  fd: number,
  fds: ReadonlyArray<number>,
  frame: Buffer
) => {
  let offset = 0
  for (let i = 0; i < fds.length; i += Codec.MAX_FDS_PER_MESSAGE) {
    const last = i + Codec.MAX_FDS_PER_MESSAGE >= fds.length
    offset += addon.sendFds(
      fd,
      fds.slice(i, i + Codec.MAX_FDS_PER_MESSAGE),
      frame.subarray(offset, last ? frame.length : offset + 1)
    )
  }
  if (offset < frame.length) socket.write(frame.subarray(offset))
}

/**
 * Node callbacks on the newcomer's connection: `ready\n` runs `then.ready`, a close before it (the
 * newcomer died, or hung past the timeout) runs `then.gone`, both in the layer's runtime; the
 * state machine tells which came first.
 */
const awaitReady = (
  deps: Deps,
  newcomer: Newcomer,
  then: { readonly ready: Effect.Effect<void>; readonly gone: Effect.Effect<void> }
) => {
  const { socket } = newcomer
  // A newcomer that hangs before `ready` must not hold this owner (and the lock) forever.
  const deadline = setTimeout(() => socket.destroy(), Duration.toMillis(deps.timeout))
  deadline.unref()
  // The newcomer says nothing but `ready\n`: more than a few bytes without it ends the handover.
  let answer = ""
  const onData = (chunk: string) => {
    answer += chunk
    const heard = Codec.decodeAnswer(answer)
    if (heard === "more") return
    if (heard === "overlong") {
      deps.runFork(Log.warning(`pid ${newcomer.pid} sent ${answer.length} bytes that are not "ready"; dropped it`))
      return socket.destroy()
    }
    socket.off("data", onData)
    clearTimeout(deadline)
    // Held open, but not keeping this process alive: its close at exit is how the new owner
    // learns this one is gone.
    socket.unref()
    deps.runFork(then.ready)
  }
  socket.setEncoding("utf8")
  socket.on("data", onData)
  socket.once("close", () => {
    clearTimeout(deadline)
    deps.runFork(then.gone)
  })
  socket.resume()
}

/** The newcomer is ready and owns the directory: this owner's `exit` completes. */
const onReady = (deps: Deps, newcomer: Newcomer) =>
  // Stepped when it runs (the newcomer said `ready`), not when it is built.
  Effect.suspend(() =>
    Fx.isFailure(deps.machine.step({ _tag: "NewcomerReady", newcomer }))
      ? Effect.void
      : Deferred.succeed(deps.exitReason, "upgraded").pipe(
        Effect.andThen(Log.info(`pid ${newcomer.pid} is ready and owns ${deps.paths.dir}; stepping down`))
      )
  )

/** It died (or timed out) before `ready`: serve on, and take owner.sock back if it had taken it. */
const onGone = (deps: Deps, owner: Owner, stillOurs: Effect.Effect<boolean>, newcomer: Newcomer) =>
  Effect.gen(function*() {
    const stepped = deps.machine.step({ _tag: "Gone", newcomer })
    // Refused: it was ready first. Stopped meanwhile: nothing to serve on.
    if (Fx.isFailure(stepped) || Fx.successOf(stepped)._tag !== "HandingOver") return
    yield* Log.warning(`pid ${newcomer.pid} went away before it was ready; serving on`)
    if (!(yield* stillOurs)) yield* owner.claim
    // It may have recorded itself as the owner before it died.
    yield* recordOwner(deps.paths)
  }).pipe(Fx.catchAll((error) => Log.error(error.message)))
