/**
 * Reading the owner's answer on a newcomer's connection: `busy`, or an offer
 * frame (header line, then the manifest it announces, the fds riding on the
 * first bytes), read in bounded reads that never go past what the header
 * announced and never block the event loop.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Fx from "../fx.js"
import type * as Native from "../native.js"
import * as Codec from "./codec.js"

/** How long one wait for the owner's answer lasts on the worker thread before the loop looks again. */
const WAIT_SLICE_MS = 250

/** One read of at most `max` bytes; the fds it brings are in `received` at once, for the caller to close. */
const readSome = (
  addon: Native.Addon,
  fd: number,
  max: number,
  received: Array<number>
): Effect.Effect<Buffer, Error> =>
  Effect.flatMap(
    Effect.try({
      try: () => {
        const got = addon.recvFds(fd, max)
        if (got !== null) received.push(...got.fds)
        if (got?.truncated === true) {
          throw new Error(
            `fds the owner sent were dropped (MSG_CTRUNC): this process may be at its fd limit (ulimit -n)`
          )
        }
        return got?.data
      },
      catch: (error) => error as Error
    }),
    (data) =>
      data !== undefined ? Effect.succeed(data) : Effect.andThen(
        // Waits off the event loop, a slice at a time: an interruption (the timeout, SIGTERM) is never held up.
        Effect.tryPromise({ try: () => addon.waitReadable(fd, WAIT_SLICE_MS), catch: (error) => error as Error }),
        readSome(addon, fd, max, received)
      )
  )

/** The owner's answer on a connection: `busy`, or an offer frame read to its announced end. */
export const readAnswer = Effect.fnUntraced(
  function*(addon: Native.Addon, fd: number, peer: { readonly pid: number }, received: Array<number>) {
    const first = yield* readHeader(addon, fd, peer, received)
    if (first === undefined) return { _tag: "Nobody" } as const
    const header = Codec.decodeHeader(first.line)
    if (Fx.isFailure(header)) return yield* Effect.fail(new Error(Fx.failureOf(header)))
    const announced = Fx.successOf(header)
    if (announced._tag === "Busy") return { _tag: "Busy", pid: peer.pid } as const
    const { bytes } = announced
    const body: Array<Buffer> = [first.rest]
    let have = first.rest.length
    while (have < bytes) {
      const data = yield* readSome(addon, fd, Math.min(bytes - have, 1 << 20), received)
      if (data.length === 0) {
        return yield* Effect.fail(
          new Error(`the owner (pid ${peer.pid}) closed the connection after ${have} of ${bytes} manifest bytes`)
        )
      }
      body.push(data)
      have += data.length
    }
    const offer = Codec.decodeManifest(announced, Buffer.concat(body), received.length)
    if (Fx.isFailure(offer)) return yield* Effect.fail(new Error(Fx.failureOf(offer)))
    return { _tag: "Offer", fd, peer, offer: Fx.successOf(offer), fds: [...received] } as const
  }
)

/**
 * The header line, read a little at a time and never past `MAX_HEADER`, with what came after it;
 * undefined if the owner went away before it answered at all.
 */
const readHeader = Effect.fnUntraced(
  function*(addon: Native.Addon, fd: number, peer: { readonly pid: number }, received: Array<number>) {
    let head = Buffer.alloc(0)
    let newline = -1
    while (newline === -1) {
      const data = yield* readSome(addon, fd, Codec.MAX_HEADER - head.length, received)
      if (data.length === 0) {
        // End of stream before a whole header: the owner went away before it answered.
        if (head.length === 0 && received.length === 0) return undefined
        return yield* Effect.fail(new Error(`the owner (pid ${peer.pid}) closed the connection mid-answer`))
      }
      head = Buffer.concat([head, data])
      newline = head.indexOf(10)
      if (newline === -1 && head.length >= Codec.MAX_HEADER) {
        return yield* Effect.fail(new Error(Codec.noHeaderLine(peer.pid, head)))
      }
    }
    return { line: head.subarray(0, newline).toString("latin1"), rest: head.subarray(newline + 1) }
  }
)
