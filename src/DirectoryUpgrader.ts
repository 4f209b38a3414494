/**
 * Handover between processes that did not start each other (the tableroll
 * model): two instances of a systemd template unit, a new release directory,
 * containers sharing a volume. Each process starts on its own and provides
 * the same `Upgrader` and `Fds` services as `Upgrader.layer`; a process that
 * starts while another owns the directory receives that owner's listening
 * sockets, and when it calls `ready` the owner's `exit` completes and it
 * drains.
 *
 * ```ts
 * export const UpgraderLive = DirectoryUpgrader.layer({ dir: "/run/app" })
 * ```
 *
 * Sockets travel over a unix socket in the directory with SCM_RIGHTS, which
 * Node cannot do by itself: this needs the package's native addon (shipped
 * for linux-x64; `npx effect-tableflip build-native` elsewhere) and Linux; without them the
 * layer fails with `NotSupported` and the rest of the library works as
 * before. TCP and unix listeners carry over; UDP sockets, connections, files
 * and state do not. `upgrade` fails with `NotSupported`: the next process is
 * started by whoever deploys, not by this one.
 *
 * Security: the directory must belong to this process's user and be writable
 * by nobody else (`DirectoryError` "Permissions" otherwise; it is created 0700
 * when missing), every directory above it must belong to this user or root and
 * be writable by nobody else unless sticky (as `/tmp`), and both ends check the
 * other's uid (SO_PEERCRED), so a process of another user can neither take the
 * sockets nor hand over fakes.
 *
 * A starting process waits for the owner up to `timeout`, interruptibly (SIGTERM
 * ends it at once), without blocking its event loop; a recorded owner that is
 * not provably the same process (pid and start time, same user) is stale.
 *
 * @since 0.2.0
 */
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as Fds from "./Fds.js"
import * as Directory from "./internal/directory.js"
import * as Fx from "./internal/fx.js"
import * as Instance from "./internal/instance.js"
import * as Services from "./internal/services.js"
import type { DirectoryError, DuplicateUpgrader, NotSupported } from "./UpgradeError.js"
import type { Upgrader } from "./Upgrader.js"

/**
 * @since 0.2.0
 * @category models
 */
export interface Options {
  /** The coordination directory, e.g. `/run/app` (systemd's `RuntimeDirectory=`). */
  readonly dir: string
  /**
   * How long to wait for the takeover lock, and then for the owner's answer (a busy owner, one
   * whose connection queue is full, one that answers slowly). Default: 1 minute.
   */
  readonly timeout?: Fx.DurationInput | undefined
  /** Also write this process's pid here at `ready`. */
  readonly pidFile?: string | undefined
}

/**
 * The directory handover as `Upgrader` and `Fds`.
 *
 * @example
 * ```ts
 * import * as DirectoryUpgrader from "effect-tableflip/DirectoryUpgrader"
 *
 * // Provided instead of Upgrader.layer: each process is started by the deploy, and one that starts
 * // while another owns /run/app takes that owner's listeners.
 * export const UpgraderLive = DirectoryUpgrader.layer({ dir: "/run/app", timeout: "1 minute" })
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (
  options: Options
): Layer.Layer<Upgrader | Fds.Fds, DirectoryError | NotSupported | DuplicateUpgrader> =>
  Fx.layerScopedContext(
    // One Upgrader per process, of either kind.
    Effect.andThen(Instance.claim("DirectoryUpgrader.layer"), Directory.make(options)).pipe(
      Effect.map(({ registry, upgrader }) => Services.context(upgrader, Fds.fromRegistry(registry)))
    )
  )
