/**
 * What a new generation hears from the previous one while it takes over: the
 * manifest to serve by (at once, or for a prepared generation with `go`),
 * every socket it names, the state if it has one, and the runner's word
 * under a runner. One record holds what has arrived so far; the channel's
 * handlers, run one at a time in arrival order, update it and complete its
 * Deferreds.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import { HandoverError } from "../../UpgradeError.js"
import type * as Channel from "../channel.js"
import * as Fx from "../fx.js"
import * as Handles from "../handles.js"
import * as Protocol from "../protocol.js"

/** @internal */
export interface Incoming {
  /** The manifest this generation started with (for a prepared one, without sockets). */
  readonly initial: Protocol.Manifest
  readonly prepared: boolean
  /** Whether the parent is a runner. */
  readonly supervised: boolean
  /** For a prepared generation: the manifest `go` carries, or why it will never come. */
  readonly go: Deferred.Deferred<Protocol.Manifest, HandoverError>
  /** Every socket and the state, when the manifest to serve by is known. */
  readonly allReceived: Deferred.Deferred<void, HandoverError>
  readonly parentGone: Deferred.Deferred<void>
  readonly predecessorGone: Deferred.Deferred<void>
  readonly exitRequested: Deferred.Deferred<number>
  readonly stopRequested: Deferred.Deferred<void>
  /** The socket handles that arrived, by key. */
  readonly received: Map<string, unknown>
  /** The manifest to serve by: `initial`, until a `go` replaces it. */
  manifest: Protocol.Manifest
  /** The keys of the sockets the manifest names, and their kinds. */
  kinds: ReadonlyMap<string, Protocol.SocketDescriptor["kind"]>
  state: string | undefined
  /** Whether the manifest to serve by is known: at once, or for a prepared generation at `go`. */
  started: boolean
}

/** @internal */
export const make = (initial: Protocol.Manifest): Effect.Effect<Incoming> =>
  Effect.gen(function*() {
    const supervised = initial.supervisor === true
    const parentGone = yield* Deferred.make<void>()
    const predecessorGone = supervised ? yield* Deferred.make<void>() : parentGone
    if (supervised && initial.generation === 1) Fx.doneUnsafe(predecessorGone, Effect.void)
    const incoming: Incoming = {
      initial,
      prepared: initial.prepared === true,
      supervised,
      go: yield* Deferred.make<Protocol.Manifest, HandoverError>(),
      allReceived: yield* Deferred.make<void, HandoverError>(),
      parentGone,
      predecessorGone,
      exitRequested: yield* Deferred.make<number>(),
      stopRequested: yield* Deferred.make<void>(),
      received: new Map(),
      manifest: initial,
      kinds: new Map(),
      state: undefined,
      started: false
    }
    if (!incoming.prepared) expect(incoming, initial)
    return incoming
  })

const settleIfComplete = (incoming: Incoming) => {
  const complete = incoming.received.size === incoming.kinds.size &&
    (incoming.manifest.state !== true || incoming.state !== undefined)
  if (complete) Fx.doneUnsafe(incoming.allReceived, Effect.void)
}

/** What is still to come: the keys of sockets that have not arrived, and the state. */
export const missing = (incoming: Incoming): Array<string> => {
  const keys = [...incoming.kinds.keys()].filter((key) => !incoming.received.has(key))
  if (incoming.manifest.state === true && incoming.state === undefined) keys.push("its state")
  return keys
}

// Run by the handler that brought `go`, before the sockets that follow it are handled.
const expect = (incoming: Incoming, next: Protocol.Manifest) => {
  incoming.started = true
  incoming.manifest = next
  incoming.kinds = new Map(
    next.fds.filter((d): d is Protocol.SocketDescriptor => d.kind !== "file").map((d) => [d.key, d.kind])
  )
  Fx.doneUnsafe(incoming.go, Effect.succeed(next))
  settleIfComplete(incoming)
}

const malformedGo = (detail: string) => new HandoverError({ reason: "Malformed", detail })

// The manifest arrives raw: a malformed `go` is checked here too, so that it fails this
// generation with what is wrong instead of leaving it parked.
const onGo = (incoming: Incoming, raw: unknown) => {
  if (!incoming.prepared || incoming.started) return
  const checked = raw === undefined
    ? Fx.fail(malformedGo("the go message carries no manifest"))
    : Protocol.validate(raw, "the go message")
  if (Fx.isFailure(checked)) return void Fx.doneUnsafe(incoming.go, Effect.fail(Fx.failureOf(checked)))
  const manifest = Fx.successOf(checked)
  const files = (m: Protocol.Manifest) => JSON.stringify(m.fds.filter((d) => d.kind === "file"))
  if (files(manifest) !== files(incoming.initial)) {
    const detail = "the go message names other files than this generation inherited when it was prepared"
    return void Fx.doneUnsafe(incoming.go, Effect.fail(malformedGo(detail)))
  }
  expect(incoming, manifest)
}

const onSocket = (incoming: Incoming, discard: Channel.Receiver["discard"], key: string, handle: object) => {
  const kind = incoming.kinds.get(key)
  if (kind === undefined) return discard(handle, `under ${key}, which the manifest does not name`)
  if (incoming.received.has(key)) return discard(handle, `a second time under ${key}`)
  if (!Handles.fits(kind, handle)) {
    Handles.closeHandle(handle)
    const detail = `${key} should be a ${kind} socket but arrived as ${Handles.describeHandle(handle)}`
    return Fx.doneUnsafe(incoming.allReceived, new HandoverError({ reason: "WrongKind", detail }))
  }
  incoming.received.set(key, handle)
  settleIfComplete(incoming)
}

/**
 * The dispatch record for the channel. Before `go` a prepared generation
 * expects nothing else; only a runner's generations hear the runner.
 *
 * @internal
 */
export const handlers =
  (incoming: Incoming, requests: Channel.Requests) =>
  (discard: Channel.Receiver["discard"]): Channel.Handlers<Channel.ToChild> => {
    const fromRunner = <M extends Channel.ToChild>(handler: (message: M) => void) => (message: M) => {
      if (incoming.started && incoming.supervised) handler(message)
    }
    return {
      go: ({ manifest }) => onGo(incoming, manifest),
      descriptor: ({ key }, handle) => {
        if (incoming.started) onSocket(incoming, discard, key, handle)
        else discard(handle, "before go")
      },
      state: ({ state }) => {
        if (!incoming.started) return
        incoming.state = state
        settleIfComplete(incoming)
      },
      exit: fromRunner(({ result }) => Fx.doneUnsafe(incoming.exitRequested, Effect.succeed(result.pid))),
      stop: fromRunner(() => Fx.doneUnsafe(incoming.stopRequested, Effect.void)),
      "predecessor-gone": fromRunner(() => Fx.doneUnsafe(incoming.predecessorGone, Effect.void)),
      "upgrade-result": fromRunner(requests.answer),
      "prepare-result": fromRunner(requests.answer)
    }
  }

/** A `go` that does not decode still ends a prepared generation's wait, with what is wrong. @internal */
export const malformed = (incoming: Incoming): Channel.Malformed<Channel.ToChild> => ({
  go: (raw) => onGo(incoming, raw.manifest)
})

/**
 * The parent is gone: a parked generation will get no `go`, a request no
 * answer, and what has not arrived never will.
 *
 * @internal
 */
export const disconnected = (incoming: Incoming, requests: Channel.Requests): void => {
  Fx.doneUnsafe(incoming.parentGone, Effect.void)
  Fx.doneUnsafe(
    incoming.go,
    new HandoverError({
      reason: "MissingFd",
      detail: `the previous generation (pid ${incoming.initial.parentPid}) went away while this generation was parked`
    })
  )
  requests.abandon()
  Fx.doneUnsafe(
    incoming.allReceived,
    new HandoverError({
      reason: "MissingFd",
      detail: `the previous generation (pid ${incoming.manifest.parentPid}) went away before it handed over ${
        missing(incoming).join(", ")
      }`
    })
  )
}
