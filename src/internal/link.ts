/**
 * A new generation's end of the IPC channel to the previous generation.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Net from "node:net"
import { HandoverError } from "../UpgradeError.js"
import * as Handles from "./handles.js"
import * as Protocol from "./protocol.js"
import type { Inherited } from "./registry.js"

/** @internal */
export interface Link {
  readonly parentPid: number
  /** Every descriptor the manifest names, with the handle each socket arrived as. */
  readonly inherited: ReadonlyArray<Inherited>
  /** Completes when the previous generation has exited. */
  readonly parentGone: Deferred.Deferred<void>
  /**
   * Tells the previous generation this one is ready. If it is already gone,
   * there is nobody to tell and this completes all the same.
   */
  readonly notifyReady: Effect.Effect<void>
}

/**
 * Listens on the channel, waits until every socket the manifest names has
 * arrived, and keeps listening for the previous generation's exit.
 *
 * @internal
 */
export const open = (manifest: Protocol.Manifest): Effect.Effect<Link, HandoverError, Scope.Scope> =>
  Effect.gen(function*() {
    const parentGone = yield* Deferred.make<void>()
    const sockets = manifest.fds.filter((d): d is Protocol.SocketDescriptor => d.kind !== "file")
    const received = new Map<string, unknown>()
    const allReceived = yield* Deferred.make<void, HandoverError>()
    const expected = new Set(sockets.map((d) => d.key))
    if (expected.size === 0) Deferred.unsafeDone(allReceived, Effect.void)

    const kinds = new Map(sockets.map((d) => [d.key, d.kind]))
    const onMessage = (message: unknown, handle: unknown) => {
      if (!Protocol.isMessage(message) || message.tableflip !== "descriptor" || message.key === undefined) return
      const kind = kinds.get(message.key)
      if (kind === undefined || handle === undefined) return
      if (!fits(kind, handle)) {
        Handles.closeHandle(handle)
        return Deferred.unsafeDone(
          allReceived,
          new HandoverError({
            reason: "WrongKind",
            detail: `${message.key} should be a ${kind} socket but arrived as ${describeHandle(handle)}`
          })
        )
      }
      received.set(message.key, handle)
      if (received.size === expected.size) Deferred.unsafeDone(allReceived, Effect.void)
    }
    const onDisconnect = () => {
      Deferred.unsafeDone(parentGone, Effect.void)
      const missing = [...expected].filter((key) => !received.has(key))
      Deferred.unsafeDone(
        allReceived,
        new HandoverError({
          reason: "MissingFd",
          detail: `the previous generation (pid ${manifest.parentPid}) went away before it handed over ${
            missing.join(", ")
          }`
        })
      )
    }
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        process.on("message", onMessage)
        process.on("disconnect", onDisconnect)
        if (!process.connected) onDisconnect()
      }),
      () =>
        Effect.sync(() => {
          process.off("message", onMessage)
          process.off("disconnect", onDisconnect)
        })
    )
    yield* Deferred.await(allReceived)
    // From here on the channel only tells when the previous generation is gone;
    // waiting for that must not keep this one alive.
    process.channel?.unref()

    let notified = false
    const notifyReady = Effect.async<void>((resume) => {
      if (notified || !process.connected || process.send === undefined) return resume(Effect.void)
      notified = true
      const message: Protocol.Message = { tableflip: "ready" }
      // With a callback, a channel that broke (the parent died) is an error here, not a crash.
      process.send(message, undefined, {}, () => resume(Effect.void))
    })

    return {
      parentPid: manifest.parentPid,
      inherited: manifest.fds.map((descriptor): Inherited =>
        descriptor.kind === "file"
          ? { descriptor, fd: descriptor.fd }
          : { descriptor, handle: received.get(descriptor.key) }
      ),
      parentGone,
      notifyReady
    }
  })

/** Whether a handle that arrived over the channel is what the manifest says. */
const fits = (kind: Protocol.SocketDescriptor["kind"], handle: unknown): boolean => {
  switch (kind) {
    case "tcp":
      return describeHandle(handle) === "TCP"
    case "unix":
      return describeHandle(handle) === "Pipe"
    case "udp":
      return describeHandle(handle) === "UDP"
    case "conn":
      return handle instanceof Net.Socket
  }
}

const describeHandle = (handle: unknown): string =>
  typeof handle === "object" && handle !== null ? handle.constructor.name : typeof handle
