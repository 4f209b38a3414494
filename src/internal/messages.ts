/**
 * The messages of the IPC channel, one variant of a union tagged by
 * `tableflip` each, with exactly its fields, per direction, and the decoder
 * of each (hand-written, not `effect/Schema`: see `channel.ts`).
 *
 * @internal
 */
import * as Fx from "./fx.js"
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
  return Fx.isSuccess(decoded)
    ? { _tag: "Message", message: Fx.successOf(decoded) }
    : { _tag: "Malformed", tag: tag as M["tableflip"], reason: Fx.failureOf(decoded) }
}
