/**
 * A new generation's end of the control channel to the previous generation.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Net from "node:net"
import type * as Protocol from "./protocol.js"
import { encodeFrame } from "./spawn.js"

/** @internal */
export interface Link {
  readonly parentPid: number
  /** Completes when the previous generation has exited. */
  readonly parentGone: Deferred.Deferred<void>
  /**
   * Tells the previous generation this one is ready. Completes once the frame
   * is written; if the previous generation is already gone, there is nobody
   * to tell and it completes all the same.
   */
  readonly notifyReady: Effect.Effect<void>
}

/** @internal */
export const open = (manifest: Protocol.Manifest): Effect.Effect<Link, never, Scope.Scope> =>
  Effect.gen(function*() {
    const parentGone = yield* Deferred.make<void>()
    const socket = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const socket = new Net.Socket({ fd: manifest.control, readable: true, writable: true })
        const gone = () => Deferred.unsafeDone(parentGone, Effect.void)
        socket.on("end", gone)
        socket.on("close", gone)
        socket.on("error", gone)
        // The parent sends nothing; reading is how its exit shows up as end-of-file.
        socket.resume()
        // Waiting for the previous generation must not keep this one alive.
        socket.unref()
        return socket
      }),
      (socket) => Effect.sync(() => socket.destroy())
    )
    let notified = false
    const notifyReady = Effect.async<void>((resume) => {
      if (notified || socket.destroyed) return resume(Effect.void)
      notified = true
      socket.write(encodeFrame({ type: "ready" }), () => resume(Effect.void))
    })
    return { parentPid: manifest.parentPid, parentGone, notifyReady }
  })
