/**
 * The upgrade state machine of one generation, as data: every state, every
 * event, and the one function that moves between them. Everything else in
 * the lifecycle asks this module what is allowed.
 *
 *   Starting  --MarkReady-->  Ready
 *   Ready     --Begin-->      Upgrading            (or refused: see `refusal`)
 *   Upgrading --Spawned-->    Upgrading{childPid}
 *   Upgrading --Failed-->     Ready
 *   Upgrading --Succeeded-->  Upgraded{childPid}
 *   Ready | Upgrading --StepDown--> Upgraded{childPid}     (a runner started the next generation)
 *   Starting | Ready | Upgrading --Stop--> Stopped{wasReady}
 *   Stopped --Succeeded | StepDown--> Upgraded{childPid}   (the new generation was ready first)
 *
 * `TRANSITIONS` is the same table, which `test/lifecycleState.test.ts`
 * checks against `transition` and against this diagram.
 *
 * @internal
 */
import type { UpgradeError } from "../../UpgradeError.js"
import { AlreadyUpgraded, NotReady, ParentNotExited, Stopped, UpgradeInProgress } from "../../UpgradeError.js"
import * as Fx from "../fx.js"

/** @internal */
export type State =
  | { readonly _tag: "Starting" }
  | { readonly _tag: "Ready" }
  | { readonly _tag: "Upgrading"; readonly childPid: number | undefined }
  | { readonly _tag: "Upgraded"; readonly childPid: number }
  /** `wasReady`: it served, so the unix socket paths it bound or inherited are its own to unlink. */
  | { readonly _tag: "Stopped"; readonly wasReady: boolean }

/** @internal */
export type Event =
  | { readonly _tag: "MarkReady" }
  /** An upgrade (or a prepare, which checks and stays put) asks to start; `parentPid` is set while the previous generation lives. */
  | { readonly _tag: "Begin"; readonly pid: number; readonly parentPid: number | undefined }
  | { readonly _tag: "Spawned"; readonly childPid: number }
  | { readonly _tag: "Succeeded"; readonly childPid: number }
  | { readonly _tag: "Failed" }
  /** Under a runner: it says the next generation is ready. */
  | { readonly _tag: "StepDown"; readonly childPid: number }
  | { readonly _tag: "Stop" }

/** Which events each state takes (others leave it as it is, or are refused: `Begin`). @internal */
export const TRANSITIONS: { readonly [S in State["_tag"]]: ReadonlyArray<Event["_tag"]> } = {
  Starting: ["MarkReady", "Stop"],
  Ready: ["Begin", "StepDown", "Stop"],
  Upgrading: ["Spawned", "Succeeded", "Failed", "StepDown", "Stop"],
  Upgraded: [],
  // A new generation that became ready as this one was stopped serves the listeners now: this one
  // must count as upgraded, or it would unlink the unix socket paths the new one serves.
  Stopped: ["Succeeded", "StepDown"]
}

/**
 * Whether an upgrade may begin in `state`: the refusal `upgrade` and
 * `prepare` fail with, or `undefined`.
 *
 * @internal
 */
export const refusal = (
  state: State,
  event: { readonly pid: number; readonly parentPid: number | undefined }
): UpgradeError | undefined => {
  switch (state._tag) {
    case "Starting":
      return new NotReady({ pid: event.pid })
    case "Upgrading":
      return new UpgradeInProgress({ childPid: state.childPid })
    case "Upgraded":
      return new AlreadyUpgraded({ childPid: state.childPid })
    case "Stopped":
      return new Stopped({ childPid: undefined })
    case "Ready":
      return event.parentPid === undefined ? undefined : new ParentNotExited({ parentPid: event.parentPid })
  }
}

/**
 * The next state. Only `Begin` can be refused; any other event a state does
 * not take leaves it as it is (a late `Failed` after `Stop`, a second
 * `MarkReady`).
 *
 * @internal
 */
export const transition = (state: State, event: Event): Fx.Result<State, UpgradeError> => {
  if (event._tag === "Begin") {
    const refused = refusal(state, event)
    return refused === undefined ? Fx.succeed({ _tag: "Upgrading", childPid: undefined }) : Fx.fail(refused)
  }
  if (!TRANSITIONS[state._tag].includes(event._tag)) return Fx.succeed(state)
  switch (event._tag) {
    case "MarkReady":
      return Fx.succeed({ _tag: "Ready" })
    case "Spawned":
      return Fx.succeed({ _tag: "Upgrading", childPid: event.childPid })
    case "Succeeded":
    case "StepDown":
      return Fx.succeed({ _tag: "Upgraded", childPid: event.childPid })
    case "Failed":
      return Fx.succeed({ _tag: "Ready" })
    case "Stop":
      return Fx.succeed({ _tag: "Stopped", wasReady: state._tag !== "Starting" })
  }
}

/**
 * Whether this generation may unlink a unix socket path when it lets the
 * listener go: never once it handed over (the path is the new generation's);
 * one it bound itself, always; an inherited one only after it served, or in
 * a first generation (systemd's sockets).
 *
 * @internal
 */
export const mayUnlink = (state: State, boundHere: boolean, firstGeneration: boolean): boolean => {
  switch (state._tag) {
    case "Upgraded":
      return false
    case "Starting":
      return boundHere || firstGeneration
    case "Stopped":
      return boundHere || firstGeneration || state.wasReady
    case "Ready":
    case "Upgrading":
      return true
  }
}

/**
 * The state, held where finalizers can read it synchronously (the registry
 * asks `mayUnlink` while a scope closes), changed only through `transition`.
 *
 * @internal
 */
export interface Machine {
  readonly get: () => State
  /** Applies `event`; a refused `Begin` leaves the state as it was. */
  readonly apply: (event: Event) => Fx.Result<State, UpgradeError>
}

/** @internal */
export const machine = (): Machine => {
  let current: State = { _tag: "Starting" }
  return {
    get: () => current,
    apply: (event) => {
      const next = transition(current, event)
      if (Fx.isSuccess(next)) current = Fx.successOf(next)
      return next
    }
  }
}
