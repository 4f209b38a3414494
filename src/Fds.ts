/**
 * The descriptor registry: listeners as scoped resources that survive an
 * upgrade.
 *
 * In a new generation, `listen` hands back the very socket the previous
 * generation passed (no new bind, no refused connection); otherwise it binds
 * a new one. Everything listened on here is passed on at the next upgrade.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Net from "node:net"
import type * as Registry from "./internal/registry.js"
import type { ListenError } from "./UpgradeError.js"

/**
 * Where to listen: TCP (`host`, `port`) or a unix stream socket (`path`; a
 * leading `"\0"` means Linux's abstract namespace).
 *
 * Without a `name`, an inherited listener matches by address: the same `path`,
 * or the same `port` on the address `host` resolves to. A listener asked for
 * on port 0 is registered under the port it got, so the next generation asks
 * for that port (or both use the same `name`).
 *
 * @since 0.1.0
 * @category models
 */
export interface ListenOptions extends Registry.ListenOptions {
  /** Match inherited listeners by this name instead of by address. */
  readonly name?: string | undefined
  readonly host?: string | undefined
  readonly port?: number | undefined
  readonly path?: string | undefined
  readonly backlog?: number | undefined
  readonly ipv6Only?: boolean | undefined
}

/**
 * The registry service, provided by `Upgrader.layer` and `UpgraderTest.layer`.
 *
 * @since 0.1.0
 * @category tags
 */
export class Fds extends Context.Tag("effect-tableflip/Fds")<Fds, {
  /**
   * Makes `server` listen on an inherited socket or a new one, and registers
   * it for the next generation. Closing the scope stops the server accepting
   * (it does not cut open connections: that is the drain's job) and never
   * unlinks a unix socket path that another generation serves.
   */
  readonly listen: <S extends Net.Server>(
    options: ListenOptions,
    server: S
  ) => Effect.Effect<S, ListenError, Scope.Scope>
  /** Keys of inherited descriptors nobody has claimed; they are closed at `ready`. */
  readonly unclaimed: Effect.Effect<ReadonlyArray<string>>
  /** Keys of the descriptors the next generation will receive. */
  readonly registered: Effect.Effect<ReadonlyArray<string>>
}>() {}

/**
 * Listens on an inherited or new socket. Without a `server`, a plain
 * `net.Server` is made; pass an `http.Server` (or any `net.Server`) to serve
 * with it.
 *
 * @since 0.1.0
 * @category accessors
 */
export const listen = <S extends Net.Server = Net.Server>(
  options: ListenOptions,
  server?: S
): Effect.Effect<S, ListenError, Fds | Scope.Scope> =>
  Effect.flatMap(Fds, (fds) => fds.listen(options, server ?? (Net.createServer() as S)))

/**
 * Keys of inherited descriptors nobody has claimed yet.
 *
 * @since 0.1.0
 * @category accessors
 */
export const unclaimed: Effect.Effect<ReadonlyArray<string>, never, Fds> = Effect.flatMap(Fds, (fds) => fds.unclaimed)

/**
 * Keys of the descriptors the next generation will receive.
 *
 * @since 0.1.0
 * @category accessors
 */
export const registered: Effect.Effect<ReadonlyArray<string>, never, Fds> = Effect.flatMap(
  Fds,
  (fds) => fds.registered
)

/**
 * Builds the service over a registry.
 *
 * @internal
 */
export const fromRegistry = (registry: Registry.Registry): Fds["Type"] =>
  Fds.of({
    listen: (options, server) => registry.listen(options, server),
    unclaimed: Effect.sync(() => registry.unclaimed()),
    registered: Effect.sync(() => registry.registered())
  })
