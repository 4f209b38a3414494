/**
 * The directory handover's state, as one union whose states carry their data,
 * and the one function that moves it.
 *
 * The main path, and the whole table (test/directoryState.test.ts checks the
 * table against `transition` both ways; every pair not in it is `Refused`):
 *
 * ```
 *   Waiting ─MarkReady─▶ Claiming ─Claimed─▶ Serving ─Offered─▶ HandingOver ─NewcomerReady─▶ HandedOver
 *                                               ▲                    │
 *                                               └──────── Gone ──────┘
 *
 *   Waiting      MarkReady      -> Claiming
 *   Waiting      Stop           -> Stopped      ready: false
 *   Claiming     Claimed        -> Serving
 *   Claiming     Stop           -> Stopped      ready: true
 *   Serving      Offered        -> HandingOver  newcomer: the one offered
 *   Serving      Stop           -> Stopped      ready: true
 *   HandingOver  NewcomerReady  -> HandedOver   if it is the newcomer handed to
 *   HandingOver  Gone           -> Serving      if it is the newcomer handed to
 *   HandingOver  Stop           -> Stopped      ready: true, the newcomer still in flight
 *   Stopped      MarkReady      -> Stopped      if not ready: now ready
 *   Stopped      Claimed        -> Stopped      if ready
 *   Stopped      NewcomerReady  -> HandedOver   if it is the newcomer in flight
 *   Stopped      Gone           -> Stopped      if it is the newcomer in flight: none in flight now
 * ```
 *
 * `Waiting`: this process holds the takeover lock and maybe its predecessor's
 * sockets; nothing of the directory is its own yet. `Claiming`: the app said
 * `ready`; owner.sock is being renamed over. `Serving`: owner.sock is ours and a
 * newcomer gets an offer. `HandingOver`: the offer went to one newcomer; any
 * other is answered `busy`. `HandedOver`: that newcomer is ready and owns the
 * directory; this process steps down and unlinks nothing. `Stopped`: the app
 * stops; a newcomer still in flight may yet say `ready` (then nothing is
 * unlinked either), and a `ready` the app had not said yet is still carried
 * out (the predecessor still waits for it).
 *
 * An event a state does not take is `Refused`: the caller decides what that
 * means (a `busy` answer, a second `ready` that does nothing).
 *
 * @internal
 */
import * as Data from "effect/Data"
import type * as Net from "node:net"
import * as Fx from "../fx.js"

/** The process a handover goes to: its pid (SO_PEERCRED) and the connection it waits on. */
export interface Newcomer {
  readonly pid: number
  readonly socket: Net.Socket
}

/** @internal */
export type State =
  | { readonly _tag: "Waiting" }
  | { readonly _tag: "Claiming" }
  | { readonly _tag: "Serving" }
  | { readonly _tag: "HandingOver"; readonly newcomer: Newcomer }
  | { readonly _tag: "HandedOver"; readonly newcomer: Newcomer }
  | { readonly _tag: "Stopped"; readonly ready: boolean; readonly newcomer: Newcomer | undefined }

/** @internal */
export type Event =
  | { readonly _tag: "MarkReady" }
  | { readonly _tag: "Claimed" }
  | { readonly _tag: "Offered"; readonly newcomer: Newcomer }
  | { readonly _tag: "NewcomerReady"; readonly newcomer: Newcomer }
  | { readonly _tag: "Gone"; readonly newcomer: Newcomer }
  | { readonly _tag: "Stop" }

/** An event the state does not take; never leaves this module's callers. */
export class Refused extends Data.TaggedError("Refused")<{
  readonly state: State["_tag"]
  readonly event: Event["_tag"]
}> {
  override get message() {
    return `the directory handover takes no ${this.event} while ${this.state}`
  }
}

/** @internal */
export const initial: State = { _tag: "Waiting" }

const refuse = (state: State, event: Event) => Fx.fail(new Refused({ state: state._tag, event: event._tag }))
const to = (state: State): Fx.Result<State, Refused> => Fx.succeed(state)

/** The whole machine: every (state, event) pair not named here is refused. */
export const transition = (state: State, event: Event): Fx.Result<State, Refused> => {
  switch (event._tag) {
    case "MarkReady":
      if (state._tag === "Waiting") return to({ _tag: "Claiming" })
      if (state._tag === "Stopped" && !state.ready) return to({ ...state, ready: true })
      return refuse(state, event)
    case "Claimed":
      if (state._tag === "Claiming") return to({ _tag: "Serving" })
      // Stopped while claiming: it stays stopped, with owner.sock claimed.
      if (state._tag === "Stopped" && state.ready) return to(state)
      return refuse(state, event)
    case "Offered":
      return state._tag === "Serving" ? to({ _tag: "HandingOver", newcomer: event.newcomer }) : refuse(state, event)
    case "NewcomerReady":
      return isHandingTo(state, event.newcomer)
        ? to({ _tag: "HandedOver", newcomer: event.newcomer })
        : refuse(state, event)
    case "Gone":
      if (!isHandingTo(state, event.newcomer)) return refuse(state, event)
      return state._tag === "Stopped" ? to({ ...state, newcomer: undefined }) : to({ _tag: "Serving" })
    case "Stop":
      switch (state._tag) {
        case "HandedOver":
        case "Stopped":
          return refuse(state, event)
        case "Waiting":
          return to({ _tag: "Stopped", ready: false, newcomer: undefined })
        case "HandingOver":
          return to({ _tag: "Stopped", ready: true, newcomer: state.newcomer })
        default:
          return to({ _tag: "Stopped", ready: true, newcomer: undefined })
      }
  }
}

/** A handover to `newcomer` is in flight (the app may have stopped meanwhile). */
const isHandingTo = (state: State, newcomer: Newcomer) =>
  (state._tag === "HandingOver" || state._tag === "Stopped") && state.newcomer === newcomer

/** The app said `ready` (the inherited sockets are this process's own from then on). */
export const isReady = (state: State): boolean => state._tag === "Stopped" ? state.ready : state._tag !== "Waiting"

/**
 * Whether this process may unlink a unix socket's path when it closes it: never after handing
 * over (the successor serves there now), and an inherited one only once it is ours (after `ready`,
 * or when nobody handed it over).
 */
export const mayUnlink = (state: State, boundHere: boolean, hasPredecessor: boolean): boolean =>
  state._tag !== "HandedOver" && (boundHere || isReady(state) || !hasPredecessor)

/**
 * The state, held where a finalizer can read it synchronously (the registry asks `mayUnlink`
 * while a scope closes, and Node callbacks step it), moved only by `transition`.
 */
export interface Machine {
  /** Applies `event`: the state it left, or why it was refused (the state is then unchanged). */
  readonly step: (event: Event) => Fx.Result<State, Refused>
  readonly get: () => State
}

/** A machine in its initial state. */
export const machine = (): Machine => {
  let current: State = initial
  return {
    step: (event) => {
      const next = transition(current, event)
      if (Fx.isFailure(next)) return Fx.fail(Fx.failureOf(next))
      const left = current
      current = Fx.successOf(next)
      return Fx.succeed(left)
    },
    get: () => current
  }
}
