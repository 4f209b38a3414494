/**
 * The receiving end of the IPC channel: what Node delivers is decoded in its
 * 'message' callback and put, with the socket handle Node passed beside it,
 * on an unbounded queue (an array and a wake-up: `effect/Queue` would be two
 * more modules to load before `ready`); one fiber, forked in the receiver's scope, takes
 * each in turn and calls its handler from a dispatch record. So handlers run
 * one at a time in the order the messages arrived, in the runtime the
 * receiver was built in (the app's logger), and stop when that scope closes.
 * A handler that throws is logged, and the next message is handled all the
 * same.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Fx from "../fx.js"
import * as Handles from "../handles.js"
import * as Log from "../log.js"
import type { Decoded, Decoders, Message } from "../messages.js"
import { decode } from "../messages.js"

/** A handler per tag; only `descriptor` comes with a socket handle. */
export type Handlers<M extends Message> = {
  readonly [T in M["tableflip"]]: (
    message: Extract<M, { readonly tableflip: T }>,
    handle: T extends "descriptor" ? object : undefined
  ) => void
}

/** A hook per tag for its malformed messages, given raw. */
export type Malformed<M extends Message> = {
  readonly [T in M["tableflip"]]?: (raw: Readonly<Record<string, unknown>>) => void
}

/** @internal */
export interface Receiver {
  /** For `process.on("message")` or `child.on("message")`. */
  readonly receive: (message: unknown, handle: unknown) => void
  /** Closes a socket nobody will claim and says so: left alone it would stay open in this process for good. */
  readonly discard: (handle: unknown, why: string) => void
  /**
   * Runs `event` in turn, after every message received before it: for what the
   * peer does outside the channel (it exits, it disconnects), which must not
   * overtake the messages it sent first. Once the receiver's scope has closed,
   * runs it at once.
   */
  readonly after: (event: () => void) => void
  /** Completes once every message received so far has been handled. */
  readonly settled: Effect.Effect<void>
}

type Item<M extends Message> =
  | {
    readonly _tag: "Received"
    readonly decoded: Exclude<Decoded<M>, { readonly _tag: "Foreign" }>
    readonly raw: unknown
    readonly handle: object | undefined
  }
  | { readonly _tag: "After"; readonly event: () => void }

/** What the consuming fiber works with. */
interface Context<M extends Message> {
  readonly peer: string
  readonly dispatch: Readonly<Record<string, (message: M, handle: object | undefined) => void>>
  readonly malformed: Readonly<Record<string, ((raw: Readonly<Record<string, unknown>>) => void) | undefined>>
  readonly discard: (handle: unknown, why: string) => void
  /** Tags already logged as ignored: each is logged once. */
  readonly logged: Set<string>
  /** Lines written while an item is handled (by `discard`, from inside a handler), logged after it. */
  readonly lines: Array<string>
}

const once = <M extends Message>(ctx: Context<M>, tag: string, line: string) => {
  if (ctx.logged.has(tag)) return
  ctx.logged.add(tag)
  ctx.lines.push(`${line}; later ones are ignored without a word`)
}

/** Handles one decoded message synchronously; what it has to say lands in `ctx.lines`. */
const handle = <M extends Message>(ctx: Context<M>, item: Extract<Item<M>, { readonly _tag: "Received" }>) => {
  const { decoded, handle } = item
  const tag = decoded._tag === "Message" ? decoded.message.tableflip : decoded.tag
  if (handle !== undefined && (tag !== "descriptor" || decoded._tag !== "Message")) {
    return ctx.discard(
      handle,
      decoded._tag === "Malformed"
        ? `with a malformed ${JSON.stringify(tag)} message (${decoded.reason})`
        : `with a ${JSON.stringify(tag)} message, which carries none`
    )
  }
  switch (decoded._tag) {
    case "Unknown":
      return once(ctx, tag, `ignored a ${JSON.stringify(tag)} message from ${ctx.peer}, which this build does not know`)
    case "Malformed": {
      const hook = ctx.malformed[tag]
      if (hook !== undefined) return hook(item.raw as Readonly<Record<string, unknown>>)
      return once(ctx, tag, `ignored a malformed ${JSON.stringify(tag)} message from ${ctx.peer}: ${decoded.reason}`)
    }
    case "Message": {
      if (tag === "descriptor" && handle === undefined) {
        return once(ctx, `${tag} without a socket`, `ignored a "descriptor" message from ${ctx.peer} without a socket`)
      }
      return ctx.dispatch[tag]!(decoded.message, handle)
    }
  }
}

const describe = (error: unknown) => error instanceof Error ? error.message : String(error)

/** One item, its failure logged rather than raised: the next message is handled all the same. */
const step = <M extends Message>(ctx: Context<M>, item: Item<M>): Effect.Effect<void> =>
  Effect.suspend(() => {
    let failure: string | undefined
    try {
      if (item._tag === "After") item.event()
      else handle(ctx, item)
    } catch (error) {
      failure = item._tag === "After"
        ? `handling an event of ${ctx.peer} failed: ${describe(error)}`
        : `handling a ${
          JSON.stringify(item.decoded._tag === "Message" ? item.decoded.message.tableflip : item.decoded.tag)
        } ` +
          `message from ${ctx.peer} failed: ${describe(error)}; the next messages are handled all the same`
    }
    const lines = ctx.lines.splice(0)
    return Effect.andThen(
      Effect.forEach(lines, Log.warning, { discard: true }),
      failure === undefined ? Effect.void : Log.error(failure)
    )
  })

// Left in the queue when the scope closes: the events still run (a peer's exit must be heard),
// and the sockets, which no handler will take now, are closed.
const leftovers = <M extends Message>(queue: Inbox<M>) =>
  Effect.sync(() => {
    for (const item of queue.items.splice(0)) {
      if (item._tag === "After") item.event()
      else if (item.handle !== undefined) Handles.closeHandle(item.handle)
    }
  })

/** What is waiting to be handled, and how to wake the consumer when it waits for more. */
interface Inbox<M extends Message> {
  readonly items: Array<Item<M>>
  wake: (() => void) | undefined
}

const offer = <M extends Message>(queue: Inbox<M>, item: Item<M>) => {
  queue.items.push(item)
  const wake = queue.wake
  queue.wake = undefined
  wake?.()
}

// The item stays in the inbox until it is taken: an interruption while waiting loses nothing,
// and `leftovers` finds it.
const take = <M extends Message>(queue: Inbox<M>): Effect.Effect<Item<M>> =>
  Effect.suspend(() => {
    const item = queue.items.shift()
    if (item !== undefined) return Effect.succeed(item)
    return Effect.flatMap(
      Fx.callback<void>((resume) => {
        queue.wake = () => resume(Effect.void)
        return Effect.sync(() => queue.wake = undefined)
      }),
      () => take(queue)
    )
  })

/**
 * Builds the function that decodes what arrives and queues it for `handlers`.
 * `peer` names the other end in log lines (`the previous generation (pid
 * 12)`). A tag in `malformed` gets its undecodable messages (raw) instead of
 * the log: a prepared generation fails on a bad `go` instead of waiting for
 * one that never comes.
 *
 * @internal
 */
export const receiver = <M extends Message>(
  decoders: Decoders<M>,
  peer: string,
  handlers: (discard: Receiver["discard"]) => Handlers<M>,
  malformed: Malformed<M> = {}
): Effect.Effect<Receiver, never, Scope.Scope> =>
  Effect.gen(function*() {
    const queue: Inbox<M> = { items: [], wake: undefined }
    let closed = false
    const lines: Array<string> = []
    const discard = (handle: unknown, why: string) => {
      Handles.closeHandle(handle)
      lines.push(`closed a socket ${peer} sent ${why}`)
    }
    const ctx: Context<M> = {
      peer,
      dispatch: handlers(discard) as unknown as Context<M>["dispatch"],
      malformed: malformed as Context<M>["malformed"],
      discard,
      logged: new Set(),
      lines
    }
    // Released after the consumer is interrupted (finalizers run in reverse).
    yield* Effect.addFinalizer(() => Effect.andThen(Effect.sync(() => closed = true), leftovers(queue)))
    // Interrupted only while it waits (an item taken is handled whole), even when built where
    // interruption is off (`spawn`): closing the scope must stop it.
    yield* Effect.interruptible(take(queue)).pipe(
      Effect.flatMap((item) => step(ctx, item)),
      Effect.uninterruptible,
      Effect.forever,
      Effect.forkScoped
    )
    const after = (event: () => void) => {
      if (closed) event()
      else offer(queue, { _tag: "After", event })
    }
    const receive = (raw: unknown, handle: unknown) => {
      const decoded = decode(decoders, raw)
      if (decoded._tag === "Foreign") return
      const socket = typeof handle === "object" && handle !== null ? handle : undefined
      if (!closed) offer(queue, { _tag: "Received", decoded, raw, handle: socket })
      else if (socket !== undefined) Handles.closeHandle(socket)
    }
    return {
      receive,
      discard,
      after,
      settled: Fx.callback<void>((resume) => after(() => resume(Effect.void)))
    }
  })
