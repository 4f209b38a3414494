/**
 * The upgrade lifecycle of one generation of a service, as a scoped layer.
 *
 * ```ts
 * const main = Effect.gen(function*() {
 *   const upgrader = yield* Upgrader.Upgrader
 *   const server = yield* Fds.listen({ host: "127.0.0.1", port: 8080 }, Http.createServer(handler))
 *   yield* upgrader.ready          // tell the previous generation (if any) to step down
 *   yield* upgrader.exit           // until a newer generation is ready, or stop
 * })                               // the scope closes: stop accepting, drain, exit
 *
 * main.pipe(
 *   Effect.provide(Upgrader.layerSignal().pipe(Layer.provideMerge(Upgrader.layer({ pidFile: "app.pid" })))),
 *   Effect.scoped,
 *   NodeRuntime.runMain
 * )
 * ```
 *
 * @since 0.1.0
 */
// Over 300 lines for its JSDoc alone (docgen builds the API reference here); the code is in internal/upgrader.ts, config.ts, signals.ts.
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import type * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Fds from "./Fds.js"
import * as Fx from "./internal/fx.js"
import * as Instance from "./internal/instance.js"
import * as Lifecycle from "./internal/lifecycle.js"
import * as Services from "./internal/services.js"
import * as Signals from "./internal/signals.js"
import * as Internal from "./internal/upgrader.js"
import type {
  DuplicateUpgrader,
  HandoverError,
  HealthCheckFailed,
  NotSupported,
  PidFileError,
  StateError,
  UpgradeError
} from "./UpgradeError.js"

/**
 * How the next generation is started. Every field is optional; the defaults
 * re-run this process as it was started: `process.execPath`, then
 * `process.execArgv`, the script and its arguments, in the directory the
 * first generation started in, with the environment as it is at upgrade time.
 *
 * @since 0.1.0
 * @category models
 */
export interface Command {
  readonly execPath?: string | undefined
  readonly args?: ReadonlyArray<string> | undefined
  readonly cwd?: string | undefined
  readonly env?: Readonly<Record<string, string | undefined>> | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /**
   * How long the next generation has to become ready, counted from the first
   * socket sent to it, before it is killed. It is passed in the handover too:
   * the next generation waits no longer than this for its sockets and state.
   * Default: 1 minute.
   */
  readonly upgradeTimeout?: Fx.DurationInput | undefined
  /**
   * Written atomically at every `ready` with the pid of the generation that
   * serves. A relative path is resolved against the first generation's
   * working directory.
   */
  readonly pidFile?: string | undefined
  /**
   * How long the old generation keeps its listeners, still accepting, after
   * the new one is ready. If the new one exits within it, `upgrade` fails with
   * `RolledBack` and the old one serves on as if nothing happened; otherwise
   * `exit` completes and the old one drains. Default: 0 (step down at
   * `ready`, as tableflip does), so a new generation that crashes right after
   * `ready` takes the listeners with it.
   */
  readonly probation?: Fx.DurationInput | undefined
  /** The largest state (`State`), JSON-encoded, an upgrade hands over. Default: 64 MiB. */
  readonly maxStateBytes?: number | undefined
  /** How the next generation is started. */
  readonly command?: Command | undefined
  /**
   * What `upgrade` does when this process listens on addresses the registry
   * does not know (found on Linux by asking each socket fd, through the
   * native addon, or through /proc without it): `"fail"` (default) with
   * `UnregisteredListener` before anything starts, or `"warn"` and go on.
   */
  readonly unregisteredListeners?: "fail" | "warn" | undefined
}

/**
 * Why `exit` completed.
 *
 * @since 0.1.0
 * @category models
 */
export type ExitReason = "upgraded" | "stopped"

/**
 * The outcome of a successful upgrade.
 *
 * @since 0.1.0
 * @category models
 */
export interface Upgraded {
  /** The pid of the new generation, which now serves every registered descriptor. */
  readonly pid: number
}

/**
 * A prepared next generation: started, loaded, and parked until the next
 * `upgrade` hands it the descriptors.
 *
 * @since 0.4.0
 * @category models
 */
export interface Prepared {
  /** The pid of the parked generation. */
  readonly pid: number
}

/**
 * The upgrade lifecycle of this generation.
 *
 * @since 0.1.0
 * @category tags
 */
export class Upgrader extends Fx.Tag<Upgrader, {
  /** This process's pid. */
  readonly pid: number
  /** 1 for a process started by hand, n + 1 for the generation started by generation n. */
  readonly generation: number
  /** Whether a previous generation started this one. */
  readonly hasParent: boolean
  /**
   * Marks this generation ready: closes inherited descriptors nobody claimed,
   * writes the PID file, and tells the previous generation to step down.
   * Call it once every listener is claimed and the service can serve.
   */
  readonly ready: Effect.Effect<void, PidFileError>
  /**
   * Starts the next generation with every registered descriptor and waits
   * for it to be ready (and, with `probation`, to stay alive that long). Fails,
   * leaving this generation serving, when the new one exits (`ChildExited`, or
   * `RolledBack` after `ready`), times out (it is killed), or `stop` is
   * called; or at once when
   * this generation is not ready, its parent still runs, another upgrade is in
   * flight, or it already upgraded.
   */
  readonly upgrade: Effect.Effect<Upgraded, UpgradeError>
  /**
   * Starts the next generation ahead of an upgrade: it loads its code and
   * builds its layers up to `Upgrader.layer`, says it is parked, and waits
   * there without a socket. The next `upgrade` hands it the descriptors and
   * state, so it becomes ready in the time its remaining layers take
   * instead of a whole start. Succeeds once it is parked (within
   * `upgradeTimeout`, or it is killed: `UpgradeTimeout`, `ChildExited`).
   * A parked generation that dies costs nothing (the next upgrade starts one
   * afresh); preparing again replaces it; `stop` kills it. The same refusals
   * as `upgrade` apply; under `effect-tableflip run` the runner prepares
   * (and later hands over to) the next generation. Files registered after it
   * was prepared make the next upgrade start afresh, since a child inherits
   * files only when it starts.
   */
  readonly prepare: Effect.Effect<Prepared, UpgradeError>
  /** Completes when this generation should stop serving: after a successful upgrade, or `stop`. */
  readonly exit: Effect.Effect<ExitReason>
  /**
   * Ends the lifecycle without an upgrade: a pending (or parked) new
   * generation is killed and reaped, then `exit` completes. Also runs when
   * the layer is released.
   */
  readonly stop: Effect.Effect<void>
  /** Completes when the previous generation has exited (at once in a first generation). */
  readonly waitForParent: Effect.Effect<void>
  /**
   * Registers, for the scope, a snapshot taken when an upgrade starts and
   * handed to the next generation under `key`, already encoded to JSON-safe
   * values. `State` is the typed way to use it.
   */
  readonly offerState: (
    key: string,
    snapshot: Effect.Effect<unknown, StateError>
  ) => Effect.Effect<void, never, Scope.Scope>
  /** The state the previous generation handed over (JSON text), if any. `State` decodes it. */
  readonly inheritedState: string | undefined
  /**
   * Tells the previous generation that this one cannot serve, so that its
   * upgrade fails at once with `HealthCheckFailed`. `readyWhen` uses it.
   */
  readonly unready: (reason: string) => Effect.Effect<void>
}>()("effect-tableflip/Upgrader") {}

/**
 * Builds the lifecycle. Reading the handover from a previous generation
 * happens here: a malformed one fails with `HandoverError`. One may be live
 * per process: while one is, this fails with `DuplicateUpgrader`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options = {}
): Effect.Effect<
  { readonly upgrader: Fx.ShapeOf<Upgrader>; readonly fds: Fx.ShapeOf<Fds.Fds> },
  HandoverError | NotSupported | DuplicateUpgrader,
  Scope.Scope
> =>
  // Claimed first: a second instance must not take the handover the live one read.
  Effect.andThen(Instance.claim("Upgrader.layer"), Lifecycle.make(options)).pipe(Effect.map((lifecycle) => ({
    upgrader: Upgrader.of(Internal.service(lifecycle)),
    fds: Fds.fromRegistry(lifecycle.registry)
  })))

/**
 * The real lifecycle, with the descriptor registry beside it. Build it once
 * per process and share it: a second one built while this one is live fails
 * with `DuplicateUpgrader`.
 *
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import * as Layer from "effect/Layer"
 * import * as Http from "node:http"
 * import { Drain, Fds, Upgrader } from "effect-tableflip"
 *
 * const main = Effect.gen(function*() {
 *   const upgrader = yield* Upgrader.Upgrader
 *   const server = yield* Fds.listen(
 *     { host: "127.0.0.1", port: 8080 },
 *     Http.createServer((_req, res) => res.end(`hello from pid ${process.pid}\n`))
 *   )
 *   yield* Drain.http(server)
 *   yield* upgrader.ready
 *   yield* upgrader.exit
 * })
 *
 * const UpgraderLive = Upgrader.layerSignal("SIGHUP").pipe(
 *   Layer.provideMerge(Upgrader.layer({ pidFile: "app.pid", probation: "5 seconds" }))
 * )
 *
 * // The program's entry point runs it: NodeRuntime.runMain(program)
 * export const program = main.pipe(Effect.scoped, Effect.provide(UpgraderLive))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options = {}
): Layer.Layer<Upgrader | Fds.Fds, HandoverError | NotSupported | DuplicateUpgrader> =>
  Fx.layerScopedContext(Effect.map(make(options), ({ fds, upgrader }) => Services.context(upgrader, fds)))

/**
 * Runs an application built as a layer (an `HttpServer.serve()` layer, say)
 * for one generation: builds it, calls `ready`, and waits for `exit`; then
 * closes it, which drains what it serves. Interrupting it (SIGTERM through
 * `NodeRuntime.runMain`) closes it too.
 *
 * @since 0.1.0
 * @category combinators
 */
export const launch = <ROut, E, RIn, E2 = never, R2 = never>(
  self: Layer.Layer<ROut, E, RIn>,
  options: {
    /** Gates `ready` on this check (see `readyWhen`), run once the layers are built. */
    readonly readyWhen?: Effect.Effect<unknown, E2, R2> | undefined
    readonly readyTimeout?: Fx.DurationInput | undefined
  } = {}
): Effect.Effect<ExitReason, E | PidFileError | HealthCheckFailed, RIn | R2 | Upgrader> =>
  Effect.flatMap(Upgrader, (upgrader) => Internal.launch(upgrader, self, options))

/**
 * `ready`, gated by a check of yours (an HTTP probe to this generation's own
 * listener, a database ping) that runs first, within `timeout` (default 30
 * seconds). If it fails or times out, the previous generation hears so at
 * once (its `upgrade` fails with `HealthCheckFailed`, and it serves on) and
 * this fails with the same error; the new generation should then exit.
 *
 * @since 0.2.0
 * @category combinators
 */
export const readyWhen = <E, R>(
  check: Effect.Effect<unknown, E, R>,
  options: { readonly timeout?: Fx.DurationInput | undefined } = {}
): Effect.Effect<void, HealthCheckFailed | PidFileError, R | Upgrader> =>
  Effect.flatMap(Upgrader, (upgrader) => Internal.readyWhen(upgrader, check, options.timeout))

// Loaded when first read, not with this module: on Effect 4 `effect/Config` brings Schema, Stream and
// the crypto modules with it, about 200 ms of CPU at every generation's start for apps that never read it.
const configs = Effect.promise(() => import("./internal/config.js"))

/**
 * Settings from the environment: `TABLEFLIP_UPGRADE_TIMEOUT` and
 * `TABLEFLIP_PROBATION` (durations as systemd spells them, `5s`, `1min`,
 * `500ms`, or as Effect does, `30 seconds`) and `TABLEFLIP_PID_FILE`.
 *
 * An effect that reads them (before 1.0.0 it was a `Config`): the Config
 * module loads when it first runs, not with this module.
 *
 * @since 0.1.0
 * @category config
 */
export const config: Effect.Effect<Options, Fx.ConfigError> = Effect.flatMap(configs, (module) => module.config)

/**
 * `layer` with settings read through `config`; `options` win over the
 * environment.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  options: Options = {}
): Layer.Layer<Upgrader | Fds.Fds, HandoverError | NotSupported | DuplicateUpgrader | Fx.ConfigError> =>
  Fx.layerUnwrap(Effect.gen(function*() {
    const { config, merge } = yield* configs
    return layer(merge(options, yield* config))
  }))

/**
 * Upgrades on a signal (SIGHUP by default) and logs the outcome; a failed
 * upgrade leaves this generation serving. Signals that arrive during an
 * upgrade are folded into one more attempt after it, and a signal to a new
 * generation whose predecessor still drains waits for that drain. With
 * `prepare` (`"SIGUSR2"` is the one `effect-tableflip prepare` sends; off by
 * default, since apps use SIGUSR2 for their own things), that signal prepares
 * the next generation (`Upgrader.prepare`).
 *
 * Once the layer is released the signals stay ignored, so a late SIGHUP can
 * never kill a generation that is draining.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerSignal = (
  signal: NodeJS.Signals = "SIGHUP",
  options: {
    /** The signal that prepares the next generation (`"SIGUSR2"` for `effect-tableflip prepare`). Default: none. */
    readonly prepare?: NodeJS.Signals | undefined
  } = {}
): Layer.Layer<never, never, Upgrader> =>
  Fx.layerScopedDiscard(Effect.flatMap(Upgrader, (upgrader) => Signals.install(upgrader, signal, options.prepare)))

/**
 * The teardown to give `NodeRuntime.runMain`, so that a generation stopped by
 * SIGTERM or SIGINT exits 0 once it has drained, on either Effect major:
 * `NodeRuntime.runMain({ teardown: Upgrader.teardown })`. Effect 3's runMain
 * already exits 0 there; Effect 4's exits 130 after an interruption, which
 * systemd counts as a failed stop and the runner passes on. A failure still
 * exits 1 (on Effect 4, or the error's own exit code).
 *
 * @example
 * ```ts
 * import { Upgrader } from "effect-tableflip"
 *
 * // The program's entry point runs it: NodeRuntime.runMain(program, runMainOptions)
 * export const runMainOptions = { teardown: Upgrader.teardown }
 * ```
 *
 * @since 1.0.0
 * @category running
 */
export const teardown: <E, A>(exit: Exit.Exit<A, E>, onExit: (code: number) => void) => void = Fx.teardown
