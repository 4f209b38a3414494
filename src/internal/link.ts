/**
 * A new generation's end of the IPC channel to the previous generation.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Scope from "effect/Scope"
import { HandoverError } from "../UpgradeError.js"
import * as Channel from "./channel.js"
import * as Handles from "./handles.js"
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
    const parentGone = yield* Deferred.make<void>()
    const prepared = initial.prepared === true
    const go = yield* Deferred.make<Protocol.Manifest, HandoverError>()
    const received = new Map<string, unknown>()
    const allReceived = yield* Deferred.make<void, HandoverError>()
    let manifest = initial
    let expected = new Set<string>()
    let kinds = new Map<string, Protocol.SocketDescriptor["kind"]>()
    let state: string | undefined
    // Whether the manifest to serve by is known: at once, or for a prepared generation at `go`.
    let started = false
    const complete = () => received.size === expected.size && (manifest.state !== true || state !== undefined)
    // Synchronous, in the message handler that brought `go`: the sockets follow it at once.
    const expect = (next: Protocol.Manifest) => {
      started = true
      manifest = next
      const sockets = next.fds.filter((d): d is Protocol.SocketDescriptor => d.kind !== "file")
      expected = new Set(sockets.map((d) => d.key))
      kinds = new Map(sockets.map((d) => [d.key, d.kind]))
      Deferred.unsafeDone(go, Effect.succeed(next))
      if (complete()) Deferred.unsafeDone(allReceived, Effect.void)
    }
    if (!prepared) expect(initial)

    const supervised = initial.supervisor === true
    const predecessorGone = supervised ? yield* Deferred.make<void>() : parentGone
    if (supervised && initial.generation === 1) Deferred.unsafeDone(predecessorGone, Effect.void)
    const exitRequested = yield* Deferred.make<number>()
    const stopRequested = yield* Deferred.make<void>()

    // The manifest arrives raw: a malformed `go` is checked here too, so that it fails this
    // generation with what is wrong instead of leaving it parked.
    const onGo = (raw: unknown) => {
      if (!prepared || started) return
      const checked = raw === undefined
        ? Either.left(new HandoverError({ reason: "Malformed", detail: "the go message carries no manifest" }))
        : Protocol.validate(raw, "the go message")
      if (Either.isLeft(checked)) return void Deferred.unsafeDone(go, Effect.fail(checked.left))
      const files = (m: Protocol.Manifest) => JSON.stringify(m.fds.filter((d) => d.kind === "file"))
      if (files(checked.right) !== files(initial)) {
        return void Deferred.unsafeDone(
          go,
          Effect.fail(
            new HandoverError({
              reason: "Malformed",
              detail: "the go message names other files than this generation inherited when it was prepared"
            })
          )
        )
      }
      expect(checked.right)
    }
    const onState = (message: Channel.StateMessage) => {
      state = message.state
      if (complete()) Deferred.unsafeDone(allReceived, Effect.void)
    }
    const onSocket = (discard: Channel.Receiver["discard"]) => (message: Channel.SocketOut, handle: object) => {
      const kind = kinds.get(message.key)
      if (kind === undefined) return discard(handle, `under ${message.key}, which the manifest does not name`)
      if (received.has(message.key)) return discard(handle, `a second time under ${message.key}`)
      if (!Handles.fits(kind, handle)) {
        Handles.closeHandle(handle)
        return Deferred.unsafeDone(
          allReceived,
          new HandoverError({
            reason: "WrongKind",
            detail: `${message.key} should be a ${kind} socket but arrived as ${Handles.describeHandle(handle)}`
          })
        )
      }
      received.set(message.key, handle)
      if (complete()) Deferred.unsafeDone(allReceived, Effect.void)
    }
    // With a callback, a channel that broke (the parent died) is no error here: nobody is left to tell.
    const send = (message: Channel.ToParent, handle?: object) => Effect.ignore(Channel.send(process, message, handle))
    const requests = Channel.requests(send)

    // Before `go` a prepared generation expects nothing else; only a runner's generations hear the runner.
    const afterGo = <M extends Channel.ToChild>(
      discard: Channel.Receiver["discard"],
      handler: (message: M, handle: object) => void
    ) =>
    (message: M, handle: object) => {
      if (started) handler(message, handle)
      else discard(handle, "before go")
    }
    const fromRunner = <M extends Channel.ToChild>(handler: (message: M) => void) => (message: M) => {
      if (started && supervised) handler(message)
    }
    const { receive } = yield* Channel.receiver(
      Channel.fromParent,
      `the previous generation (pid ${initial.parentPid})`,
      (discard) => ({
        go: ({ manifest }) => onGo(manifest),
        descriptor: afterGo(discard, onSocket(discard)),
        state: (message) => started ? onState(message) : undefined,
        exit: fromRunner(({ result }) => Deferred.unsafeDone(exitRequested, Effect.succeed(result.pid))),
        stop: fromRunner(() => Deferred.unsafeDone(stopRequested, Effect.void)),
        "predecessor-gone": fromRunner(() => Deferred.unsafeDone(predecessorGone, Effect.void)),
        "upgrade-result": fromRunner(requests.answer),
        "prepare-result": fromRunner(requests.answer)
      }),
      { go: (raw) => onGo(raw.manifest) }
    )
    const missing = () => {
      const keys = [...expected].filter((key) => !received.has(key))
      if (manifest.state === true && state === undefined) keys.push("its state")
      return keys
    }
    const onDisconnect = () => {
      Deferred.unsafeDone(parentGone, Effect.void)
      Deferred.unsafeDone(
        go,
        new HandoverError({
          reason: "MissingFd",
          detail: `the previous generation (pid ${initial.parentPid}) went away while this generation was parked`
        })
      )
      requests.abandon()
      Deferred.unsafeDone(
        allReceived,
        new HandoverError({
          reason: "MissingFd",
          detail: `the previous generation (pid ${manifest.parentPid}) went away before it handed over ${
            missing().join(", ")
          }`
        })
      )
    }
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
    if (prepared) {
      // Parked for as long as the parent lives: its `go`, or its exit, ends the wait.
      yield* send({ tableflip: "parked" })
      yield* Deferred.await(go)
    }
    // A channel that stays open and silent (a hung parent, a pipe at fd 3) must not hold this
    // generation for ever: it waits as long as its parent waits for it.
    const deadline = manifest.upgradeTimeoutMillis === undefined
      ? Protocol.HANDOVER_TIMEOUT
      : Duration.millis(manifest.upgradeTimeoutMillis)
    yield* Deferred.await(allReceived).pipe(Effect.timeoutFail({
      duration: deadline,
      onTimeout: () =>
        new HandoverError({
          reason: "Timeout",
          detail:
            `the previous generation (pid ${manifest.parentPid}) handed over ${
              received.size === 0 && state === undefined ? "nothing" : "only part"
            } of ${missing().join(", ")} within ${Duration.format(deadline)} (${
              manifest.upgradeTimeoutMillis === undefined ? "the default deadline" : "its upgrade timeout"
            }); the channel at fd ${Protocol.CHANNEL_FD} is open but silent: is the previous generation hung, ` +
            "or was this process started by hand?"
        })
    }))
    // From here on the channel only tells when the previous generation is gone;
    // waiting for that must not keep this one alive.
    process.channel?.unref()

    let notified = false
    const notifyReady = (
      listeners: ReadonlyArray<{ readonly descriptor: Protocol.SocketDescriptor; readonly handle: object }>
    ) =>
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
        return Effect.zipRight(handUp, send({ tableflip: "ready" }))
      })

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
      parentGone,
      supervised,
      predecessorGone,
      exitRequested,
      stopRequested,
      notifyReady,
      state,
      notifyUnready: (reason: string) => send({ tableflip: "unready", reason }),
      requestUpgrade: request("upgrade"),
      requestPrepare: request("prepare")
    }
  })
