/**
 * A new generation's end of the IPC channel to the previous generation.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { HandoverError } from "../UpgradeError.js"
import * as Channel from "./channel.js"
import * as Fx from "./fx.js"
import * as Incoming from "./link/incoming.js"
import * as Protocol from "./protocol.js"
import type { Inherited } from "./registry.js"

/** @internal */
export interface Link {
  /** The manifest this generation took over with: for a prepared one, the one `go` carried. */
  readonly manifest: Protocol.Manifest
  readonly parentPid: number
  /** Every descriptor the manifest names, with the handle each socket arrived as. */
  readonly inherited: ReadonlyArray<Inherited>
  /** Completes when the parent (the previous generation, or the runner) has exited. */
  readonly parentGone: Deferred.Deferred<void>
  /** Whether the parent is a runner (`effect-tableflip run`). */
  readonly supervised: boolean
  /** Completes when the previous generation has exited: the parent, or under a runner, its word. */
  readonly predecessorGone: Deferred.Deferred<void>
  /** Under a runner: completes when the runner stops the service. */
  readonly stopRequested: Deferred.Deferred<void>
  /** Under a runner: completes, with its pid, when the runner says the next generation is ready. */
  readonly exitRequested: Deferred.Deferred<number>
  /**
   * Tells the parent this one is ready; under a runner, hands `listeners` up
   * first. If the parent is gone, there is nobody to tell and this completes
   * all the same.
   */
  readonly notifyReady: (
    listeners: ReadonlyArray<{ readonly descriptor: Protocol.SocketDescriptor; readonly handle: object }>
  ) => Effect.Effect<void>
  /** The previous generation's state, JSON text of one encoded value per key, if it sent any. */
  readonly state: string | undefined
  /** Tells the parent this generation cannot serve (its readiness check failed). */
  readonly notifyUnready: (reason: string) => Effect.Effect<void>
  /** Under a runner: asks it to upgrade, and waits for its answer (`undefined` if it went away). */
  readonly requestUpgrade: Effect.Effect<Protocol.UpgradeResult | undefined>
  /** Under a runner: asks it to prepare the next generation, and waits for its answer. */
  readonly requestPrepare: Effect.Effect<Protocol.UpgradeResult | undefined>
}

// With a callback, a channel that broke (the parent died) is no error here: nobody is left to tell.
const send = (message: Channel.ToParent, handle?: object) => Effect.ignore(Channel.send(process, message, handle))

/**
 * Hears the channel for as long as the scope is open. The parent's
 * disconnect waits its turn behind the messages that came before it: a
 * parent that sends its sockets and exits has handed them over.
 */
const listen = (incoming: Incoming.Incoming, requests: Channel.Requests) =>
  Effect.gen(function*() {
    const { after, receive } = yield* Channel.receiver(
      Channel.fromParent,
      `the previous generation (pid ${incoming.initial.parentPid})`,
      Incoming.handlers(incoming, requests),
      Incoming.malformed(incoming)
    )
    const onDisconnect = () => after(() => Incoming.disconnected(incoming, requests))
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        process.on("message", receive)
        process.on("disconnect", onDisconnect)
        if (!process.connected) onDisconnect()
      }),
      () =>
        Effect.sync(() => {
          process.off("message", receive)
          process.off("disconnect", onDisconnect)
        })
    )
  })

const timedOut = (incoming: Incoming.Incoming, deadline: Duration.Duration) => {
  const { manifest, received, state } = incoming
  return new HandoverError({
    reason: "Timeout",
    detail:
      `the previous generation (pid ${manifest.parentPid}) handed over ${
        received.size === 0 && state === undefined ? "nothing" : "only part"
      } of ${Incoming.missing(incoming).join(", ")} within ${Duration.format(deadline)} (${
        manifest.upgradeTimeoutMillis === undefined ? "the default deadline" : "its upgrade timeout"
      }); the channel at fd ${Protocol.CHANNEL_FD} is open but silent: is the previous generation hung, ` +
      "or was this process started by hand?"
  })
}

/** A prepared generation parks until `go`; then every generation waits for its sockets and state. */
const awaitHandover = (incoming: Incoming.Incoming) =>
  Effect.gen(function*() {
    if (incoming.prepared) {
      // Parked for as long as the parent lives: its `go`, or its exit, ends the wait.
      yield* send({ tableflip: "parked" })
      yield* Deferred.await(incoming.go)
    }
    // A channel that stays open and silent (a hung parent, a pipe at fd 3) must not hold this
    // generation for ever: it waits as long as its parent waits for it.
    const millis = incoming.manifest.upgradeTimeoutMillis
    const deadline = millis === undefined ? Protocol.HANDOVER_TIMEOUT : Duration.millis(millis)
    yield* Deferred.await(incoming.allReceived).pipe(
      Fx.timeoutFail({ duration: deadline, onTimeout: () => timedOut(incoming, deadline) })
    )
    // From here on the channel only tells when the previous generation is gone;
    // waiting for that must not keep this one alive.
    process.channel?.unref()
  })

type Listeners = ReadonlyArray<{ readonly descriptor: Protocol.SocketDescriptor; readonly handle: object }>

/** Says `ready` once; under a runner, hands the listeners up first. */
const readyNotifier = (supervised: boolean) => {
  let notified = false
  return (listeners: Listeners) =>
    Effect.suspend(() => {
      if (notified) return Effect.void
      notified = true
      const handUp = supervised
        ? Effect.forEach(
          listeners,
          ({ descriptor, handle }) => send({ tableflip: "descriptor", key: descriptor.key, descriptor }, handle),
          { discard: true }
        )
        : Effect.void
      return Effect.andThen(handUp, send({ tableflip: "ready" }))
    })
}

const linkOf = (incoming: Incoming.Incoming, requests: Channel.Requests): Link => {
  const { manifest, received } = incoming
  const request = (kind: Channel.RequestKind) =>
    Effect.suspend(() => process.connected ? requests.request(kind) : Effect.succeed(undefined))
  return {
    manifest,
    parentPid: manifest.parentPid,
    inherited: manifest.fds.map((descriptor): Inherited =>
      descriptor.kind === "file"
        ? { descriptor, fd: descriptor.fd }
        : { descriptor, handle: received.get(descriptor.key) }
    ),
    parentGone: incoming.parentGone,
    supervised: incoming.supervised,
    predecessorGone: incoming.predecessorGone,
    exitRequested: incoming.exitRequested,
    stopRequested: incoming.stopRequested,
    notifyReady: readyNotifier(incoming.supervised),
    state: incoming.state,
    notifyUnready: (reason: string) => send({ tableflip: "unready", reason }),
    requestUpgrade: request("upgrade"),
    requestPrepare: request("prepare")
  }
}

/**
 * Listens on the channel, waits until every socket the manifest names has
 * arrived, and keeps listening for the previous generation's exit. A prepared
 * generation first says `parked` and waits, as long as its parent lives, for
 * `go` and the manifest it carries.
 *
 * @internal
 */
export const open = (initial: Protocol.Manifest): Effect.Effect<Link, HandoverError, Scope.Scope> =>
  Effect.gen(function*() {
    const incoming = yield* Incoming.make(initial)
    const requests = Channel.requests(send)
    yield* listen(incoming, requests)
    yield* awaitHandover(incoming)
    return linkOf(incoming, requests)
  })
