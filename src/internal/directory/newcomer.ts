/**
 * The newcomer's side: find the owner at owner.sock and take its offer, then,
 * at `ready`, tell it so and learn when it has gone.
 *
 * A live owner that is busy (handing over to another, draining), whose queue
 * is full or whose socket is momentarily gone is waited for; only one that is
 * provably gone makes this process the first owner. Nothing blocks the event
 * loop: connect does not wait (a full queue is retried), the wait for the
 * answer runs on a worker thread in slices, and the whole search has the
 * caller's deadline and is interruptible (SIGTERM ends it at once).
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Ref from "effect/Ref"
import * as Fs from "node:fs"
import * as Net from "node:net"
import { DirectoryError } from "../../UpgradeError.js"
import * as Fx from "../fx.js"
import * as Log from "../log.js"
import type * as Native from "../native.js"
import { readAnswer } from "./answer.js"
import * as Codec from "./codec.js"
import { type Paths, provenOwner } from "./files.js"

/** What the search found: an owner's offer (its connection and the fds it sent), or nobody. */
export type Found =
  | {
    readonly _tag: "Offer"
    readonly fd: number
    readonly peer: { readonly pid: number }
    readonly offer: Codec.Offer
    readonly fds: ReadonlyArray<number>
  }
  | { readonly _tag: "Nobody" }

type Asked = Found | { readonly _tag: "Busy"; readonly pid: number } | { readonly _tag: "Full" }

/** A refusal by the owner's uid, told apart from a broken handover by its reason. */
class PeerError extends Error {}

/** What one search has seen: what it waits for (named when the deadline comes) and what it said once. */
interface Search {
  readonly waitingFor: string
  readonly warnedSlow: boolean
  readonly warnedFull: boolean
}

const code = (error: unknown) => (error as NodeJS.ErrnoException).code

const closeQuietly = (fd: number) => {
  try {
    Fs.closeSync(fd)
  } catch {
    // Closed already.
  }
}

/** Looks for the owner until it hands over or is provably gone, for up to `timeout`. */
export const find = Effect.fnUntraced(function*(addon: Native.Addon, paths: Paths, timeout: Duration.Duration) {
  const search = yield* Ref.make<Search>({
    waitingFor: `an answer from the owner at ${paths.owner}`,
    warnedSlow: false,
    warnedFull: false
  })
  const waitFor = (waitingFor: string) => Ref.update(search, (s) => ({ ...s, waitingFor }))
  const ask = askOnce(addon, paths, timeout, search)
  const uid = process.geteuid?.() ?? 0
  const again = (delay: number) => Effect.andThen(Effect.sleep(Duration.millis(delay)), loop)
  const loop: Effect.Effect<Found, DirectoryError> = Effect.flatMap(ask, (asked) => {
    switch (asked._tag) {
      case "Offer":
        return Effect.succeed(asked)
      case "Busy":
        return Effect.andThen(
          waitFor(`the owner (pid ${asked.pid}) to finish another handover or its drain: it answered busy`),
          again(100)
        )
      case "Full":
        return Effect.andThen(onFull(paths, timeout, search), again(50))
      case "Nobody": {
        const live = provenOwner(paths.ownerPid, uid)
        if (live === undefined) return Effect.succeed(asked)
        return Effect.andThen(
          waitFor(`the owner (pid ${live}, alive as ${paths.ownerStart} records it) to answer at ${paths.owner}`),
          again(100)
        )
      }
    }
  })
  return yield* loop.pipe(
    Effect.timeout(timeout),
    // The deadline names what the search was waiting for when it came.
    Effect.catchTag(Fx.timeoutTag, () =>
      Effect.flatMap(Ref.get(search), ({ waitingFor }) =>
        new DirectoryError({
          path: paths.owner,
          reason: "Handover",
          detail: `no handover within ${Duration.format(timeout)}: waited for ${waitingFor}`
        })))
  )
})

/** A full connection queue: the owner accepts nothing (hung, stopped?); said once. */
const onFull = (paths: Paths, timeout: Duration.Duration, search: Ref.Ref<Search>) =>
  Effect.flatMap(
    Ref.getAndUpdate(search, (s) => ({
      ...s,
      warnedFull: true,
      waitingFor: `a place in the owner's connection queue at ${paths.owner}: it stayed full (EAGAIN), ` +
        "so the owner is not accepting connections (hung, or stopped with SIGSTOP?)"
    })),
    ({ warnedFull }) =>
      warnedFull ? Effect.void : Log.warning(
        `the owner's connection queue at ${paths.owner} is full (EAGAIN); retrying for up to ${
          Duration.format(timeout)
        }`
      )
  )

/**
 * Connects once and reads the answer; every fd is closed unless it comes out in an offer,
 * whether this fails, is interrupted or finds the owner busy.
 */
const askOnce = (
  addon: Native.Addon,
  paths: Paths,
  timeout: Duration.Duration,
  search: Ref.Ref<Search>
): Effect.Effect<Asked, DirectoryError> => {
  const uid = process.geteuid?.() ?? 0
  return Effect.acquireUseRelease(
    connectOnce(addon, paths.owner),
    (attempt): Effect.Effect<Asked, Error> => {
      if (typeof attempt !== "number") return Effect.succeed(attempt)
      const received: Array<number> = []
      return Effect.try({ try: () => addon.peerCred(attempt), catch: (error) => error as Error }).pipe(
        Effect.flatMap((peer) => {
          if (peer.uid !== uid) {
            return Effect.fail(new PeerError(`the owner (pid ${peer.pid}) runs as uid ${peer.uid}, not ${uid}`))
          }
          const waiting = Ref.update(search, (s) => ({
            ...s,
            waitingFor: `an answer from the owner (pid ${peer.pid}), connected at ${paths.owner}`
          }))
          return waiting.pipe(
            Effect.andThen(Fx.fork(slowWarning(peer.pid, timeout, search))),
            Effect.flatMap((warning) =>
              readAnswer(addon, attempt, peer, received).pipe(Effect.ensuring(Fiber.interrupt(warning)))
            )
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
        path: paths.owner,
        reason: error instanceof PeerError ? "Peer" : "Handover",
        detail: error.message
      })
    )
  )
}

/** An owner that accepts nothing (stopped, hung) still takes connections into its queue: say so once, after 1s. */
const slowWarning = (pid: number, timeout: Duration.Duration, search: Ref.Ref<Search>) =>
  Effect.flatMap(Ref.get(search), ({ warnedSlow }) =>
    warnedSlow ? Effect.void : Log.warning(
      `the owner (pid ${pid}) has not answered within 1s; waiting for up to ${Duration.format(timeout)}`
    ).pipe(
      Effect.andThen(Ref.update(search, (s) => ({ ...s, warnedSlow: true }))),
      Effect.delay(Duration.seconds(1))
    ))

/** One connect, which never waits: no file or nobody serving it is nobody; a full queue is retried. */
const connectOnce = (addon: Native.Addon, path: string) =>
  Effect.try({
    try: (): number | { readonly _tag: "Full" } | { readonly _tag: "Nobody" } => {
      try {
        return addon.connect(path)
      } catch (error) {
        if (code(error) === "ENOENT" || code(error) === "ECONNREFUSED") return { _tag: "Nobody" }
        if (code(error) === "EAGAIN") return { _tag: "Full" }
        throw error
      }
    },
    catch: (error) => error as Error
  })

/**
 * Tells the old owner this process is ready (it may be gone already), then watches the
 * connection, which from here on only tells when the old owner has exited: `onGone` then.
 */
export const sayReady = (fd: number, onGone: () => void): void => {
  try {
    Fs.writeSync(fd, Codec.READY)
  } catch {
    // The old owner is gone already.
  }
  const watch = new Net.Socket({ fd, readable: true, writable: false })
  watch.on("error", () => {})
  watch.on("end", onGone)
  watch.on("close", onGone)
  watch.resume()
  watch.unref()
}
