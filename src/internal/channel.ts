/**
 * The IPC channel between two generations (or a runner and its generations),
 * typed: every message is one variant of a union tagged by `tableflip`, with
 * exactly its fields, in each direction (`ToChild`, `ToParent`). What
 * arrives is decoded by a hand-written decoder per variant; what cannot be
 * decoded is ignored and logged once per tag; a socket handle that comes with
 * a message that carries none is closed. What is decoded waits in a queue
 * for one fiber (`channel/receive.ts`), which hands each message in turn to
 * a dispatch record, one function per tag (as Node's `lib/internal/cluster`
 * `primary.js` does with `methodMessageMapping`). A request (`upgrade`,
 * `prepare`) carries a sequence number `seq`, and its answer the same number
 * as `ack`.
 *
 * The decoders are hand-written on `protocol.ts`'s checks, not `effect/Schema`:
 * every generation reads the channel before `ready`, and loading Schema costs
 * a generation ~160 ms of start-up (issue 16), more than the rest of the
 * library together.
 *
 * The wire format is the one generations spoke before these types (`seq` and
 * `ack` are new and optional): generations of different builds, and a runner
 * older than the app it runs, still understand each other. An answer without
 * `ack` (an older runner) goes to the oldest request of its kind; a request
 * without `seq` (an older generation) is answered without `ack`.
 *
 * @internal
 */
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import type * as ChildProcess from "node:child_process"
import * as Fx from "./fx.js"
import type {
  Message,
  PrepareAnswer,
  PrepareRequest,
  RequestKind,
  ToChild,
  ToParent,
  UpgradeAnswer,
  UpgradeRequest
} from "./messages.js"
import type * as Protocol from "./protocol.js"

export type {
  Decoded,
  Decoders,
  ExitMessage,
  Go,
  Message,
  Parked,
  PredecessorGone,
  PrepareAnswer,
  PrepareRequest,
  Ready,
  RequestKind,
  SocketOut,
  SocketUp,
  StateMessage,
  Stop,
  ToChild,
  ToParent,
  Unready,
  UpgradeAnswer,
  UpgradeRequest
} from "./messages.js"
export { decode, fromChild, fromParent } from "./messages.js"

// --- Receiving ---------------------------------------------------------------------------------

export type { Handlers, Malformed, Receiver } from "./channel/receive.js"
export { receiver } from "./channel/receive.js"

// --- Sending -----------------------------------------------------------------------------------

/**
 * A send that did not go through: the channel was already closed (`cause`
 * undefined), or Node reported an error.
 *
 * @internal
 */
export class ChannelBroken extends Data.TaggedError("ChannelBroken")<{ readonly cause: Error | undefined }> {
  override get message(): string {
    return this.cause === undefined ? "the IPC channel is closed" : `the IPC channel broke: ${this.cause.message}`
  }
}

/**
 * Sends one message, with its socket if it carries one, from either side: to
 * a child (a `ChildProcess`), or to the parent (`process`). The socket stays
 * open here (`keepOpen`): this generation serves it until the next one is
 * ready. Completes when Node has written it; fails with `ChannelBroken` if
 * the channel is closed or breaks, which each caller treats as it must (an
 * error during a handover, nothing when telling a dying peer).
 *
 * @internal
 */
export const send: {
  (target: ChildProcess.ChildProcess, message: ToChild, handle?: object): Effect.Effect<void, ChannelBroken>
  (target: NodeJS.Process, message: ToParent, handle?: object): Effect.Effect<void, ChannelBroken>
} = (
  target: ChildProcess.ChildProcess | NodeJS.Process,
  message: Message,
  handle?: object
): Effect.Effect<void, ChannelBroken> =>
  Fx.callback<void, ChannelBroken>((resume) => {
    if (!target.connected || target.send === undefined) {
      return resume(Effect.fail(new ChannelBroken({ cause: undefined })))
    }
    // With a callback, a channel that broke (the peer died) is an error here, not a crash.
    // (`process.send` takes the same arguments as a child's.)
    const to = target as ChildProcess.ChildProcess
    to.send(message, handle as never, { keepOpen: true }, (error) => {
      resume(error === null ? Effect.void : Effect.fail(new ChannelBroken({ cause: error })))
    })
  })

// --- Requests ----------------------------------------------------------------------------------

/** @internal */
export interface Requests {
  /** Sends `kind` with the next sequence number and waits for its answer (`undefined`: the peer went away). */
  readonly request: (kind: RequestKind) => Effect.Effect<Protocol.UpgradeResult | undefined>
  /** An answer arrived: completes the request it acknowledges; false if none waits for it. */
  readonly answer: (message: UpgradeAnswer | PrepareAnswer) => boolean
  /** The peer went away: every request waiting gets `undefined`. */
  readonly abandon: () => void
}

/**
 * Requests matched to their answers by sequence number, over `post` (which
 * must not fail: a lost request is answered by `abandon`). An answer
 * without `ack`, from an older runner, goes to the oldest request of its kind.
 *
 * @internal
 */
export const requests = (post: (message: UpgradeRequest | PrepareRequest) => Effect.Effect<void>): Requests => {
  let next = 1
  const pending = new Map<
    number,
    { readonly kind: RequestKind; readonly answer: Deferred.Deferred<Protocol.UpgradeResult | undefined> }
  >()
  return {
    request: (kind) =>
      Effect.suspend(() => {
        const seq = next++
        const answer = Fx.makeDeferredUnsafe<Protocol.UpgradeResult | undefined>()
        pending.set(seq, { kind, answer })
        return Effect.andThen(post({ tableflip: kind, seq }), Deferred.await(answer)).pipe(
          Effect.ensuring(Effect.sync(() => pending.delete(seq)))
        )
      }),
    answer: (message) => {
      const kind: RequestKind = message.tableflip === "upgrade-result" ? "upgrade" : "prepare"
      let seq = message.ack
      if (seq === undefined) {
        for (const [each, waiting] of pending) {
          if (waiting.kind === kind) {
            seq = each
            break
          }
        }
      }
      const waiting = seq === undefined ? undefined : pending.get(seq)
      if (waiting === undefined || waiting.kind !== kind) return false
      pending.delete(seq!)
      Fx.doneUnsafe(waiting.answer, Effect.succeed(message.result))
      return true
    },
    abandon: () => {
      for (const { answer } of pending.values()) Fx.doneUnsafe(answer, Effect.succeed(undefined))
      pending.clear()
    }
  }
}

/**
 * The answer to a request, acknowledging its `seq` if it had one.
 *
 * @internal
 */
export const answerTo = (
  request: UpgradeRequest | PrepareRequest,
  result: Protocol.UpgradeResult
): UpgradeAnswer | PrepareAnswer => {
  const ack = request.seq === undefined ? {} : { ack: request.seq }
  return request.tableflip === "upgrade"
    ? { tableflip: "upgrade-result", ...ack, result }
    : { tableflip: "prepare-result", ...ack, result }
}
