/**
 * What travels on owner.sock, as bytes: the owner's answer (`busy\n`, or an
 * offer frame: a header line `offer <fds> <bytes>` and that many bytes of JSON
 * manifest) and the newcomer's `ready\n`. Pure: the reads and writes (and the
 * fds riding on the first bytes) are the owner's and the newcomer's.
 *
 * Decoded with the hand-written checks of `protocol.ts`, not Schema: this runs
 * before `ready`, where start-up cost matters.
 *
 * @internal
 */
import * as Fx from "../fx.js"
import * as Protocol from "../protocol.js"

/** The kernel's limit of fds in one message (SCM_MAX_FD): more travel in batches. */
export const MAX_FDS_PER_MESSAGE = 253
/** The longest header line: `offer <fds> <bytes>` or `busy`. */
export const MAX_HEADER = 64
/** The most manifest a header may announce, per socket (a descriptor takes a few hundred bytes). */
export const MAX_MANIFEST_PER_FD = 4096
/** The most a newcomer may send before `ready\n`. */
export const MAX_ANSWER = 64

/** The owner's answer to a newcomer that is free to take over. */
export interface Offer {
  readonly ownerPid: number
  readonly generation: number
  readonly descriptors: ReadonlyArray<Protocol.TcpListener | Protocol.UnixListener>
}

/** The owner's offer, checked as the handover manifest is (no Schema before `ready`). */
export const offerOf = (value: unknown): Offer => {
  const from = Protocol.fields(value, "")
  return {
    ownerPid: Protocol.integer(from.ownerPid, "ownerPid"),
    generation: Protocol.integer(from.generation, "generation"),
    descriptors: Protocol.list(from.descriptors, "descriptors", Protocol.listener)
  }
}

/** The answer of an owner that is handing over or draining: the newcomer asks again. */
export const BUSY = "busy\n"

/** The newcomer's word that it serves now. */
export const READY = "ready\n"

/** The offer frame: header line, then the manifest (the fds ride on its first bytes, sent apart). */
export const encodeOffer = (offer: Offer): Buffer => {
  const json = Buffer.from(JSON.stringify(offer), "utf8")
  return Buffer.concat([Buffer.from(`offer ${offer.descriptors.length} ${json.length}\n`, "latin1"), json])
}

/** A header line, without its newline. */
export type Header =
  | { readonly _tag: "Busy" }
  | { readonly _tag: "Offer"; readonly count: number; readonly bytes: number }

/** The header `line` (without its newline), or why it is refused. */
export const decodeHeader = (line: string): Fx.Result<Header, string> => {
  if (line === "busy") return Fx.succeed({ _tag: "Busy" })
  const match = /^offer (\d{1,6}) (\d{1,12})$/.exec(line)
  if (match === null) return Fx.fail(`the owner sent an unknown header ${JSON.stringify(line)}`)
  const count = Number(match[1])
  const bytes = Number(match[2])
  const limit = MAX_MANIFEST_PER_FD * (count + 1)
  if (bytes > limit) {
    return Fx.fail(
      `the owner announced ${bytes} bytes of manifest for ${count} sockets, over the limit of ${limit}`
    )
  }
  return Fx.succeed({ _tag: "Offer", count, bytes })
}

/** Said of a first line that never ends: an owner speaking another version of this protocol. */
export const noHeaderLine = (pid: number, head: Buffer): string =>
  `the owner (pid ${pid}) answered without a header line (${
    JSON.stringify(head.subarray(0, 24).toString("latin1"))
  }...): it runs another version of effect-tableflip; upgrade both to this one`

/**
 * The manifest announced by `header`, read whole (`body`), with the `fds` that came with it:
 * the offer, or why it is refused.
 */
export const decodeManifest = (
  header: { readonly count: number; readonly bytes: number },
  body: Buffer,
  fds: number
): Fx.Result<Offer, string> => {
  const { bytes, count } = header
  if (body.length > bytes) return Fx.fail(`the owner sent more than the ${bytes} bytes it announced`)
  if (fds !== count) return Fx.fail(`the owner announced ${count} sockets and sent ${fds}`)
  const parsed = Fx.tryResult(() => JSON.parse(body.toString("utf8")) as unknown)
  if (Fx.isFailure(parsed)) return Fx.fail(`the owner's manifest is not JSON: ${String(Fx.failureOf(parsed))}`)
  const decoded = Protocol.check(Fx.successOf(parsed), offerOf)
  if (Fx.isFailure(decoded)) return Fx.fail(`the owner's manifest is malformed: ${Fx.failureOf(decoded)}`)
  if (Fx.successOf(decoded).descriptors.length !== count) {
    return Fx.fail(`the owner named ${Fx.successOf(decoded).descriptors.length} sockets and sent ${count}`)
  }
  return decoded
}

/**
 * The newcomer's answer so far: `ready` once it holds `ready\n`, `overlong` once it is more than
 * a few bytes without it, else `more` (wait for more).
 */
export const decodeAnswer = (answer: string): "ready" | "overlong" | "more" =>
  answer.includes(READY) ? "ready" : answer.length > MAX_ANSWER ? "overlong" : "more"
