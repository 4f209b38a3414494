/**
 * The IPC channel between two generations (or a runner and its generations),
 * typed: every message is one variant of a union tagged by `tableflip`, with
 * exactly its fields, in each direction (`ToChild`, `ToParent`). What
 * arrives is decoded by a hand-written decoder per variant; what cannot be
 * decoded is ignored and logged once per tag; a socket handle that comes with
 * a message that carries none is closed. Each side handles what arrives with
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
import type * as ChildProcess from "node:child_process"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as FiberId from "effect/FiberId"
import * as Runtime from "effect/Runtime"
import * as Handles from "./handles.js"
import * as Log from "./log.js"
import * as Protocol from "./protocol.js"

// --- Parent (the previous generation, or the runner) to child --------------------------------

/** A socket, attached as the handle; `key` names it in the manifest. */
export interface SocketOut {
  readonly tableflip: "descriptor"
  readonly key: string
}

/** The previous generation's state: JSON text of one encoded value per key. */
export interface StateMessage {
  readonly tableflip: "state"
  readonly state: string
}

/** A prepared generation takes over with `manifest`; its sockets follow. */
export interface Go {
  readonly tableflip: "go"
  readonly manifest: Protocol.Manifest
}

/** The runner's answer to `upgrade` (`ack`: the request's `seq`, if it had one). */
export interface UpgradeAnswer {
  readonly tableflip: "upgrade-result"
  readonly ack?: number | undefined
  readonly result: Protocol.UpgradeResult
}

/** The runner's answer to `prepare`. */
export interface PrepareAnswer {
  readonly tableflip: "prepare-result"
  readonly ack?: number | undefined
  readonly result: Protocol.UpgradeResult
}

/** Under a runner: step down, the next generation (`result.pid`) is ready. */
export interface ExitMessage {
  readonly tableflip: "exit"
  readonly result: { readonly _tag: "Upgraded"; readonly pid: number }
}

/** Under a runner: the service stops. */
export interface Stop {
  readonly tableflip: "stop"
}

/** Under a runner: the generation this one follows has exited. */
export interface PredecessorGone {
  readonly tableflip: "predecessor-gone"
}

/** What a parent sends its child. */
export type ToChild =
  | SocketOut
  | StateMessage
  | Go
  | UpgradeAnswer
  | PrepareAnswer
  | ExitMessage
  | Stop
  | PredecessorGone

// --- Child to parent ---------------------------------------------------------------------------

/** Under a runner, at `ready`: a listener handed up, attached as the handle. */
export interface SocketUp {
  readonly tableflip: "descriptor"
  readonly key: string
  readonly descriptor: Protocol.SocketDescriptor
}

/** The child serves: the parent may drain. */
export interface Ready {
  readonly tableflip: "ready"
}

/** The child's readiness check failed. */
export interface Unready {
  readonly tableflip: "unready"
  readonly reason: string
}

/** A prepared child has loaded and waits for `go`. */
export interface Parked {
  readonly tableflip: "parked"
}

/** Under a runner: upgrade, please (`seq`: absent from generations older than sequence numbers). */
export interface UpgradeRequest {
  readonly tableflip: "upgrade"
  readonly seq?: number | undefined
}

/** Under a runner: prepare the next generation, please. */
export interface PrepareRequest {
  readonly tableflip: "prepare"
  readonly seq?: number | undefined
}

/** What a child sends its parent. */
export type ToParent = SocketUp | Ready | Unready | Parked | UpgradeRequest | PrepareRequest

/** Every message, either way. */
export type Message = ToChild | ToParent

/** The request kinds, answered by `<kind>-result`. */
export type RequestKind = "upgrade" | "prepare"

// --- Decoding ----------------------------------------------------------------------------------

/** One decoder per tag; a mismatch throws, for `Protocol.check`. */
export type Decoders<M extends Message> = {
  readonly [T in M["tableflip"]]: (from: Readonly<Record<string, unknown>>) => Extract<M, { readonly tableflip: T }>
}

const optionalInteger = (from: Readonly<Record<string, unknown>>, key: "seq" | "ack") =>
  from[key] === undefined ? {} : { [key]: Protocol.integer(from[key], key) }

const upgraded = (value: unknown, path: string): { readonly _tag: "Upgraded"; readonly pid: number } => {
  const from = Protocol.fields(value, path)
  return { _tag: Protocol.oneOf(from._tag, `${path}._tag`, ["Upgraded"]), pid: Protocol.pid(from.pid, `${path}.pid`) }
}

const result = (value: unknown, path: string): Protocol.UpgradeResult => {
  const from = Protocol.fields(value, path)
  if (Protocol.oneOf(from._tag, `${path}._tag`, ["Upgraded", "Failed"]) === "Upgraded") return upgraded(value, path)
  const error = Protocol.fields(from.error, `${path}.error`)
  return { _tag: "Failed", error: { ...error, _tag: Protocol.string(error._tag, `${path}.error._tag`) } }
}

const socketDescriptor = (value: unknown, path: string): Protocol.SocketDescriptor => {
  Protocol.oneOf(Protocol.fields(value, path).kind, `${path}.kind`, ["tcp", "unix", "udp", "conn"])
  return Protocol.descriptor(value, path) as Protocol.SocketDescriptor
}

/** What a child accepts from its parent. */
export const fromParent: Decoders<ToChild> = {
  descriptor: (from) => ({ tableflip: "descriptor", key: Protocol.string(from.key, "key") }),
  state: (from) => ({ tableflip: "state", state: Protocol.string(from.state, "state") }),
  go: (from) => ({ tableflip: "go", manifest: Protocol.manifestOf(from.manifest) }),
  "upgrade-result": (from) => ({
    tableflip: "upgrade-result",
    ...optionalInteger(from, "ack"),
    result: result(from.result, "result")
  }),
  "prepare-result": (from) => ({
    tableflip: "prepare-result",
    ...optionalInteger(from, "ack"),
    result: result(from.result, "result")
  }),
  exit: (from) => ({ tableflip: "exit", result: upgraded(from.result, "result") }),
  stop: () => ({ tableflip: "stop" }),
  "predecessor-gone": () => ({ tableflip: "predecessor-gone" })
}

/** What a parent accepts from its child. */
export const fromChild: Decoders<ToParent> = {
  descriptor: (from) => ({
    tableflip: "descriptor",
    key: Protocol.string(from.key, "key"),
    descriptor: socketDescriptor(from.descriptor, "descriptor")
  }),
  ready: () => ({ tableflip: "ready" }),
  unready: (from) => ({ tableflip: "unready", reason: Protocol.string(from.reason, "reason") }),
  parked: () => ({ tableflip: "parked" }),
  upgrade: (from) => ({ tableflip: "upgrade", ...optionalInteger(from, "seq") }),
  prepare: (from) => ({ tableflip: "prepare", ...optionalInteger(from, "seq") })
}

/** What arrived: a message of the protocol, one that is not (the app's own), or one that is but fails to decode. */
export type Decoded<M extends Message> =
  | { readonly _tag: "Message"; readonly message: M }
  | { readonly _tag: "Foreign" }
  | { readonly _tag: "Unknown"; readonly tag: string }
  | { readonly _tag: "Malformed"; readonly tag: M["tableflip"]; readonly reason: string }

/**
 * Decodes one incoming message. Anything without a `tableflip` string is not
 * the protocol's (Node delivers the app's own messages on the same channel).
 *
 * @internal
 */
export const decode = <M extends Message>(decoders: Decoders<M>, raw: unknown): Decoded<M> => {
  if (typeof raw !== "object" || raw === null || typeof (raw as { tableflip?: unknown }).tableflip !== "string") {
    return { _tag: "Foreign" }
  }
  const tag = (raw as { readonly tableflip: string }).tableflip
  if (!Object.hasOwn(decoders, tag)) return { _tag: "Unknown", tag }
  const decoder = decoders[tag as M["tableflip"]] as (from: Readonly<Record<string, unknown>>) => M
  const decoded = Protocol.check(raw, (value) => decoder(Protocol.fields(value, "")))
  return decoded._tag === "Right"
    ? { _tag: "Message", message: decoded.right }
    : { _tag: "Malformed", tag: tag as M["tableflip"], reason: decoded.left }
}

// --- Receiving ---------------------------------------------------------------------------------

/** A handler per tag; only `descriptor` comes with a socket handle. */
export type Handlers<M extends Message> = {
  readonly [T in M["tableflip"]]: (
    message: Extract<M, { readonly tableflip: T }>,
    handle: T extends "descriptor" ? object : undefined
  ) => void
}

/** @internal */
export interface Receiver {
  /** For `process.on("message")` or `child.on("message")`. */
  readonly receive: (message: unknown, handle: unknown) => void
  /** Closes a socket nobody will claim and says so: left alone it would stay open in this process for good. */
  readonly discard: (handle: unknown, why: string) => void
}

/**
 * Builds the function that decodes what arrives and dispatches it to
 * `handlers`. `peer` names the other end in log lines (`the previous
 * generation (pid 12)`). A tag in `malformed` gets its undecodable messages
 * (raw) instead of the log: a prepared generation fails on a bad `go`
 * instead of waiting for one that never comes. Log lines are written in the
 * runtime this runs in (the app's logger).
 *
 * @internal
 */
export const receiver = <M extends Message>(
  decoders: Decoders<M>,
  peer: string,
  handlers: (discard: Receiver["discard"]) => Handlers<M>,
  malformed: { readonly [T in M["tableflip"]]?: (raw: Readonly<Record<string, unknown>>) => void } = {}
): Effect.Effect<Receiver> =>
  Effect.map(Effect.runtime<never>(), (runtime) => {
    const log = (line: string) => Runtime.runFork(runtime)(Log.warning(line))
    const logged = new Set<string>()
    const once = (tag: string, line: string) => {
      if (logged.has(tag)) return
      logged.add(tag)
      log(`${line}; later ones are ignored without a word`)
    }
    const discard = (handle: unknown, why: string) => {
      Handles.closeHandle(handle)
      log(`closed a socket ${peer} sent ${why}`)
    }
    const dispatch = handlers(discard) as unknown as Readonly<
      Record<string, (message: M, handle: object | undefined) => void>
    >
    const receive = (raw: unknown, handle: unknown) => {
      const decoded = decode(decoders, raw)
      if (decoded._tag === "Foreign") return
      const hasHandle = typeof handle === "object" && handle !== null
      const tag = decoded._tag === "Message" ? decoded.message.tableflip : decoded.tag
      if (hasHandle && (tag !== "descriptor" || decoded._tag !== "Message")) {
        return discard(
          handle,
          decoded._tag === "Malformed"
            ? `with a malformed ${JSON.stringify(tag)} message (${decoded.reason})`
            : `with a ${JSON.stringify(tag)} message, which carries none`
        )
      }
      switch (decoded._tag) {
        case "Unknown":
          return once(tag, `ignored a ${JSON.stringify(tag)} message from ${peer}, which this build does not know`)
        case "Malformed": {
          const hook = (malformed as Readonly<Record<string, (raw: Readonly<Record<string, unknown>>) => void>>)[tag]
          if (hook !== undefined) return hook(raw as Readonly<Record<string, unknown>>)
          return once(tag, `ignored a malformed ${JSON.stringify(tag)} message from ${peer}: ${decoded.reason}`)
        }
        case "Message": {
          if (tag === "descriptor" && !hasHandle) {
            return once(`${tag} without a socket`, `ignored a "descriptor" message from ${peer} without a socket`)
          }
          return dispatch[tag]!(decoded.message, hasHandle ? handle as object : undefined)
        }
      }
    }
    return { receive, discard }
  })

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
  Effect.async<void, ChannelBroken>((resume) => {
    if (!target.connected || target.send === undefined) {
      return resume(Effect.fail(new ChannelBroken({ cause: undefined })))
    }
    // With a callback, a channel that broke (the peer died) is an error here, not a crash.
    ;(target.send as ChildProcess.ChildProcess["send"])(message, handle as never, { keepOpen: true }, (error) => {
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
  const pending = new Map<number, { readonly kind: RequestKind; readonly answer: Deferred.Deferred<Protocol.UpgradeResult | undefined> }>()
  return {
    request: (kind) =>
      Effect.suspend(() => {
        const seq = next++
        const answer = Deferred.unsafeMake<Protocol.UpgradeResult | undefined>(FiberId.none)
        pending.set(seq, { kind, answer })
        return Effect.zipRight(post({ tableflip: kind, seq }), Deferred.await(answer)).pipe(
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
      Deferred.unsafeDone(waiting.answer, Effect.succeed(message.result))
      return true
    },
    abandon: () => {
      for (const { answer } of pending.values()) Deferred.unsafeDone(answer, Effect.succeed(undefined))
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
