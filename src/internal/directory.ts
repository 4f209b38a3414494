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
 * The rooms, under `directory/`: `files` (the paths, the directory's and a
 * recorded owner's checks), `lock` (upgrade.lock), `newcomer` (finding the
 * owner, taking its offer, saying `ready`), `answer` (the newcomer's bounded
 * reads of the owner's answer), `owner` (serving owner.sock and handing over),
 * `codec` (the bytes on owner.sock) and `state` (the one state machine both
 * sides move, read synchronously; its diagram is there). This module wires them.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberSet from "effect/FiberSet"
import type * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as PidFile from "../PidFile.js"
import { NotSupported, PidFileError } from "../UpgradeError.js"
import type { ExitReason, Upgrader } from "../Upgrader.js"
import * as Files from "./directory/files.js"
import * as Lock from "./directory/lock.js"
import * as Newcomer from "./directory/newcomer.js"
import * as Owner from "./directory/owner.js"
import * as State from "./directory/state.js"
import * as Fx from "./fx.js"
import * as Log from "./log.js"
import * as Native from "./native.js"
import { Registry } from "./registry.js"

/** @internal */
export interface Options {
  readonly dir: string
  readonly timeout?: Fx.DurationInput | undefined
  readonly pidFile?: string | undefined
}

/** @internal */
export const make = Effect.fnUntraced(function*(options: Options) {
  const { addon, reason } = Native.load()
  if (addon === undefined) return yield* new NotSupported({ platform: process.platform, reason })
  const paths = Files.paths(Path.resolve(options.dir))
  yield* Files.checkDirectory(paths.dir)
  const timeout = Fx.decodeDuration(options.timeout ?? Duration.minutes(1))
  Log.identify(`directory ${paths.dir}`)
  // Effects started from Node callbacks run in this layer's runtime (the app's logger) and end with it.
  const runFork = yield* FiberSet.makeRuntime<never>()

  const lock = yield* Lock.take(addon, paths.lock, timeout)
  const found = yield* Newcomer.find(addon, paths, timeout)
  const predecessor = found._tag === "Offer" ? found : undefined
  const generation = predecessor === undefined ? 1 : predecessor.offer.generation + 1
  const inherited = predecessor === undefined
    ? []
    : predecessor.offer.descriptors.map((descriptor, i) => ({ descriptor, fd: predecessor.fds[i]! }))

  const machine = State.machine()
  const exitReason = yield* Deferred.make<ExitReason>()
  const predecessorGone = yield* Deferred.make<void>()
  if (predecessor === undefined) Fx.doneUnsafe(predecessorGone, Effect.void)
  const registry = new Registry(inherited, {
    // Asked synchronously as the registry closes a unix listener.
    mayUnlink: (boundHere) => State.mayUnlink(machine.get(), boundHere, predecessor !== undefined)
  })
  const owner = yield* Owner.make({ addon, paths, timeout, machine, registry, generation, exitReason, runFork })
  const wired: Wired = { options, paths, lock, predecessor, machine, registry, owner, exitReason, predecessorGone }
  const stop = stopOf(wired)
  yield* Effect.addFinalizer(() => release(wired, stop))

  const startsNoSuccessor = Effect.fail(
    new NotSupported({
      platform: process.platform,
      reason: "a DirectoryUpgrader process does not start its successor: start the next one " +
        "(another unit instance, a new release) and it takes over through the directory"
    })
  )
  const upgrader: Fx.ShapeOf<Upgrader> = {
    pid: process.pid,
    generation,
    hasParent: predecessor !== undefined,
    ready: readyOf(wired),
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

/** The rooms, wired: what `ready`, `stop` and the release share. */
interface Wired {
  readonly options: Options
  readonly paths: Files.Paths
  readonly lock: Lock.Lock
  /** The owner that handed over to this process, if any: its connection and pid. */
  readonly predecessor: Extract<Newcomer.Found, { readonly _tag: "Offer" }> | undefined
  readonly machine: State.Machine
  readonly registry: Registry
  readonly owner: Owner.Owner
  readonly exitReason: Deferred.Deferred<ExitReason>
  readonly predecessorGone: Deferred.Deferred<void>
}

/** `ready`: claim owner.sock, record this process as the owner, tell the predecessor, let the lock go. */
const readyOf = (wired: Wired) =>
  Effect.gen(function*() {
    const { machine, options, paths, predecessor } = wired
    // Checked before the pid file is written, stepped after: a pid file that fails leaves `ready` to try again.
    if (Fx.isFailure(State.transition(machine.get(), { _tag: "MarkReady" }))) return
    if (options.pidFile !== undefined) yield* PidFile.write(options.pidFile)
    wired.registry.closeUnclaimed()
    if (Fx.isFailure(machine.step({ _tag: "MarkReady" }))) return
    yield* wired.owner.claim.pipe(
      Effect.mapError((error) => new PidFileError({ path: error.path, cause: error.message }))
    )
    yield* Files.recordOwner(paths)
    machine.step({ _tag: "Claimed" })
    if (predecessor !== undefined) {
      Newcomer.sayReady(predecessor.fd, () => Fx.doneUnsafe(wired.predecessorGone, Effect.void))
    }
    yield* wired.lock.release
    yield* Log.info(
      predecessor === undefined ? "ready: first owner" : `ready: took over from pid ${predecessor.peer.pid}`
    )
  })

/** `stop`: this process's `exit` completes with "stopped", unless it handed over (or stopped) already. */
const stopOf = ({ exitReason, machine }: Wired): Effect.Effect<void> =>
  Effect.suspend(() =>
    Fx.isFailure(machine.step({ _tag: "Stop" })) ? Effect.void : Deferred.succeed(exitReason, "stopped")
  )

/** At the end of the scope: stop, end a handover in flight, let owner.sock go (unlinked unless handed over). */
const release = (wired: Wired, stop: Effect.Effect<void>) =>
  Effect.gen(function*() {
    yield* stop
    const state = wired.machine.get()
    if (state._tag === "Stopped") state.newcomer?.socket.destroy()
    yield* wired.owner.close(state._tag !== "HandedOver")
    // A newcomer that never got to `ready` closes its end, so the owner serves on at once.
    if (wired.predecessor !== undefined && !State.isReady(state)) Fs.closeSync(wired.predecessor.fd)
  })
