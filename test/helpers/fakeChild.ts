/**
 * A next generation that is not a process: what the lifecycle's `spawner`
 * and the runner's `spawn` seams return in the in-process tests. Every call
 * the code under test makes on it is recorded; the test completes its
 * `ready`, `parked`, `unready` and `exited` to play the child's part.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Fx from "../../src/internal/fx.js"
import type * as Messages from "../../src/internal/messages.js"
import type * as Protocol from "../../src/internal/protocol.js"
import type { Handover } from "../../src/internal/registry.js"
import type * as Spawn from "../../src/internal/spawn.js"

/** A fake next generation, and what was done to it. */
export interface FakeChild extends Spawn.Child {
  /** The manifest and handover it was "started" with. */
  readonly manifest: Protocol.Manifest
  readonly handover: Handover
  /** Completes at the first `sendSockets` or `sendGo`. */
  readonly handed: Deferred.Deferred<void>
  readonly record: {
    readonly sent: Array<"sockets" | { readonly go: Protocol.Manifest; readonly handover: Handover }>
    readonly posted: Array<Messages.ToChild>
    killed: boolean
    detached: boolean
  }
}

/** A fake child with pid `pid` (pick one above 2^22, the kernel's highest, so no signal can reach a process). */
export const makeFakeChild = (pid: number, manifest: Protocol.Manifest, handover: Handover) =>
  Effect.gen(function*() {
    const exited = yield* Deferred.make<Spawn.Exited>()
    const handed = yield* Deferred.make<void>()
    const record: FakeChild["record"] = { sent: [], posted: [], killed: false, detached: false }
    const child: FakeChild = {
      pid,
      manifest,
      handover,
      handed,
      record,
      ready: yield* Deferred.make<void>(),
      parked: yield* Deferred.make<void>(),
      unready: yield* Deferred.make<string>(),
      exited,
      sendSockets: Effect.suspend(() => {
        record.sent.push("sockets")
        return Deferred.succeed(handed, undefined)
      }),
      sendGo: (go, handover) =>
        Effect.suspend(() => {
          record.sent.push({ go, handover })
          return Deferred.succeed(handed, undefined)
        }),
      kill: Effect.suspend(() => {
        record.killed = true
        return Deferred.succeed(exited, { code: null, signal: "SIGKILL" })
      }),
      detach: Effect.sync(() => {
        record.detached = true
      }),
      post: (message) =>
        Effect.sync(() => {
          record.posted.push(message)
        })
    }
    return child
  })

/** Whether `effect` (an await) has completed, given every runnable fiber a turn first. */
export const isDone = <A>(effect: Effect.Effect<A>) =>
  Effect.gen(function*() {
    const fiber = yield* Fx.fork(effect)
    yield* Fx.yieldNow
    const done = Option.isSome(yield* Fx.pollFiber(fiber))
    yield* Fiber.interrupt(fiber)
    return done
  })
