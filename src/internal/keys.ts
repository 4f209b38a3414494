/**
 * Registry keys: how a descriptor is known in a manifest, in `Fds.registered`
 * and in error messages. One place builds them and one parses them, so the
 * registry, systemd activation and the stray check always agree on the text.
 *
 * A key is `name:<name>` when the app named the descriptor, otherwise its
 * address: `tcp:<host>:<port>`, `unix:<path>` (`unix:@<name>` for Linux's
 * abstract namespace), `udp4:<host>:<port>` or `udp6:<host>:<port>`; hosts
 * are `*` for any address and bracketed when IPv6. Connections and files are
 * always named: `conn:<name>`, `file:<name>`.
 *
 * @internal
 */

/** What a key says, once parsed. @internal */
export type Parsed =
  | { readonly kind: "name"; readonly name: string }
  | { readonly kind: "conn"; readonly name: string }
  | { readonly kind: "file"; readonly name: string }
  | { readonly kind: "tcp"; readonly host: string | undefined; readonly port: number }
  | { readonly kind: "unix"; readonly path: string }
  | { readonly kind: "udp"; readonly type: "udp4" | "udp6"; readonly host: string | undefined; readonly port: number }

/**
 * A host as keys show it: `*` for any address, brackets around IPv6 so the
 * port stays readable.
 *
 * @internal
 */
export const hostLabel = (host: string | undefined): string =>
  host === undefined || host === "" ? "*" : host.includes(":") ? `[${host}]` : host

/** A descriptor the app named. @internal */
export const named = (name: string): string => `name:${name}`

/** A connected socket, always named. @internal */
export const conn = (name: string): string => `conn:${name}`

/** An open fd, always named. @internal */
export const file = (name: string): string => `file:${name}`

/** A TCP listener by address. @internal */
export const tcp = (host: string | undefined, port: number): string => `tcp:${hostLabel(host)}:${port}`

/** A unix stream listener by path; an abstract name (leading NUL) shows as `@`. @internal */
export const unix = (path: string): string => path.startsWith("\0") ? `unix:@${path.slice(1)}` : `unix:${path}`

/** A UDP socket by address. @internal */
export const udp = (type: "udp4" | "udp6", host: string | undefined, port: number): string =>
  `${type}:${hostLabel(host)}:${port}`

/** `name` when given, else the address key. @internal */
export const namedOr = (name: string | undefined, byAddress: string): string =>
  name === undefined ? byAddress : named(name)

type Prefix = "name" | "conn" | "file" | "tcp" | "unix" | "udp4" | "udp6"

/**
 * Reads a key back; `undefined` for text no constructor here makes.
 *
 * @internal
 */
export const parse = (key: string): Parsed | undefined => {
  const colon = key.indexOf(":")
  if (colon === -1) return undefined
  const prefix = key.slice(0, colon) as Prefix
  const rest = key.slice(colon + 1)
  switch (prefix) {
    case "name":
    case "conn":
    case "file":
      return { kind: prefix, name: rest }
    case "unix":
      return rest === "" ? undefined : { kind: "unix", path: rest.startsWith("@") ? `\0${rest.slice(1)}` : rest }
    case "tcp": {
      const address = parseAddress(rest)
      return address === undefined ? undefined : { kind: "tcp", ...address }
    }
    case "udp4":
    case "udp6": {
      const address = parseAddress(rest)
      return address === undefined ? undefined : { kind: "udp", type: prefix, ...address }
    }
    default:
      return undefined
  }
}

const parseAddress = (
  text: string
): { readonly host: string | undefined; readonly port: number } | undefined => {
  const colon = text.lastIndexOf(":")
  if (colon === -1) return undefined
  const label = text.slice(0, colon)
  const portText = text.slice(colon + 1)
  const port = Number(portText)
  if (portText === "" || !Number.isInteger(port) || port < 0 || port > 65535) return undefined
  if (label === "*") return { host: undefined, port }
  if (label.startsWith("[") && label.endsWith("]")) return { host: label.slice(1, -1), port }
  if (label === "" || label.includes(":")) return undefined
  return { host: label, port }
}

/**
 * The name inside a `file:` key (what `Fds.files` reports), or `undefined`.
 *
 * @internal
 */
export const fileName = (key: string): string | undefined => {
  const parsed = parse(key)
  return parsed?.kind === "file" ? parsed.name : undefined
}
