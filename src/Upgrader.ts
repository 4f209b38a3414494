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
import * as Cause from "effect/Cause"
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FiberId from "effect/FiberId"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Fds from "./Fds.js"
import * as Durations from "./internal/duration.js"
import * as Instance from "./internal/instance.js"
import * as Lifecycle from "./internal/lifecycle.js"
import * as Log from "./internal/log.js"
import * as Services from "./internal/services.js"
import type {
  DuplicateUpgrader,
  HandoverError,
  NotSupported,
  PidFileError,
  StateError,
  UpgradeError
} from "./UpgradeError.js"
import { HealthCheckFailed } from "./UpgradeError.js"

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
  readonly upgradeTimeout?: Duration.DurationInput | undefined
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
  readonly probation?: Duration.DurationInput | undefined
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
export class Upgrader extends Context.Tag("effect-tableflip/Upgrader")<Upgrader, {
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
}>() {}

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
  { readonly upgrader: Upgrader["Type"]; readonly fds: Fds.Fds["Type"] },
  HandoverError | NotSupported | DuplicateUpgrader,
  Scope.Scope
> =>
  // Claimed first: a second instance must not take the handover the live one read.
  Effect.zipRight(Instance.claim("Upgrader.layer"), Lifecycle.make(options)).pipe(Effect.map((lifecycle) => ({
    upgrader: Upgrader.of({
      pid: lifecycle.pid,
      generation: lifecycle.generation,
      hasParent: lifecycle.hasParent,
      ready: lifecycle.ready,
      upgrade: lifecycle.upgrade,
      prepare: lifecycle.prepare,
      exit: lifecycle.exit,
      stop: lifecycle.stop,
      waitForParent: lifecycle.waitForParent,
      offerState: lifecycle.offerState,
      inheritedState: lifecycle.inheritedState,
      unready: lifecycle.unready
    }),
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
  Layer.scopedContext(Effect.map(make(options), ({ fds, upgrader }) => Services.context(upgrader, fds)))

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
    readonly readyTimeout?: Duration.DurationInput | undefined
  } = {}
): Effect.Effect<ExitReason, E | PidFileError | HealthCheckFailed, RIn | R2 | Upgrader> =>
  Effect.scoped(Effect.gen(function*() {
    const upgrader = yield* Upgrader
    yield* Layer.build(self)
    yield* options.readyWhen === undefined
      ? upgrader.ready
      : readyWhen(options.readyWhen, { timeout: options.readyTimeout })
    const reason = yield* upgrader.exit
    yield* Log.info(`${reason}: draining`)
    return reason
  }))

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
  options: { readonly timeout?: Duration.DurationInput | undefined } = {}
): Effect.Effect<void, HealthCheckFailed | PidFileError, R | Upgrader> =>
  Effect.gen(function*() {
    const upgrader = yield* Upgrader
    const timeout = Duration.decode(options.timeout ?? Duration.seconds(30))
    yield* check.pipe(
      Effect.timeoutFail({ duration: timeout, onTimeout: () => `no answer within ${Duration.format(timeout)}` }),
      Effect.catchAllCause((cause) => {
        const reason = describeCause(Cause.squash(cause))
        return Effect.zipRight(upgrader.unready(reason), new HealthCheckFailed({ pid: upgrader.pid, reason }))
      })
    )
    yield* upgrader.ready
  }).pipe(Effect.withSpan("Upgrader.readyWhen"))

const describeCause = (error: unknown): string =>
  typeof error === "string"
    ? error
    : error instanceof Error || (typeof error === "object" && error !== null && "message" in error)
    ? String((error as { message: unknown }).message)
    : String(error)

/** A duration in either spelling; a wrong one names the variable (Config adds it) and the forms. */
const durationConfig = (name: string): Config.Config<Duration.Duration> =>
  Config.string(name).pipe(Config.mapOrFail((text) => {
    const duration = Durations.parse(text)
    return duration === undefined
      ? Either.left(ConfigError.InvalidData([], `${JSON.stringify(text)} is not a duration; use ${Durations.FORMS}`))
      : Either.right(duration)
  }))

/**
 * Settings from the environment: `TABLEFLIP_UPGRADE_TIMEOUT` and
 * `TABLEFLIP_PROBATION` (durations as systemd spells them, `5s`, `1min`,
 * `500ms`, or as Effect does, `30 seconds`) and `TABLEFLIP_PID_FILE`.
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<Options> = Config.all({
  upgradeTimeout: durationConfig("TABLEFLIP_UPGRADE_TIMEOUT").pipe(
    Config.withDefault(Lifecycle.DEFAULT_UPGRADE_TIMEOUT)
  ),
  pidFile: Config.option(Config.string("TABLEFLIP_PID_FILE")),
  probation: durationConfig("TABLEFLIP_PROBATION").pipe(Config.withDefault(Duration.zero))
}).pipe(Config.map(({ pidFile, probation, upgradeTimeout }) => ({
  upgradeTimeout,
  probation,
  pidFile: Option.getOrUndefined(pidFile)
})))

/**
 * `layer` with settings read through `config`; `options` win over the
 * environment.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  options: Options = {}
): Layer.Layer<Upgrader | Fds.Fds, HandoverError | NotSupported | DuplicateUpgrader | ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.map(config, (fromEnv) =>
    layer({
      upgradeTimeout: options.upgradeTimeout ?? fromEnv.upgradeTimeout,
      pidFile: options.pidFile ?? fromEnv.pidFile,
      probation: options.probation ?? fromEnv.probation,
      maxStateBytes: options.maxStateBytes,
      command: options.command,
      unregisteredListeners: options.unregisteredListeners
    })))

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
  Layer.scopedDiscard(Effect.gen(function*() {
    const upgrader = yield* Upgrader
    yield* onSignal(
      signal,
      // A signal to a new generation whose predecessor still drains (a second deploy hook, say)
      // is an upgrade after that drain, not a ParentNotExited the operator has to retry.
      Effect.zipRight(upgrader.waitForParent, Effect.map(upgrader.upgrade, ({ pid }) => `upgraded to pid ${pid}`))
    )
    if (options.prepare !== undefined) {
      yield* onSignal(
        options.prepare,
        Effect.zipRight(upgrader.waitForParent, Effect.map(upgrader.prepare, ({ pid }) => `prepared pid ${pid}`))
      )
    }
  }))

/** Runs `action` once per signal, folding the ones that arrive while it runs into one more run. */
const onSignal = (signal: NodeJS.Signals, action: Effect.Effect<string, UpgradeError>) =>
  Effect.gen(function*() {
    // One pending request at most (a Deferred completed once by any number of signals): what
    // arrives during a run is one more run after it. Not a Queue, whose modules every
    // generation would load before `ready` for this alone.
    let requested = Deferred.unsafeMake<void>(FiberId.none)
    const handler = () => {
      Deferred.unsafeDone(requested, Effect.void)
    }
    yield* Effect.acquireRelease(
      Effect.sync(() => process.on(signal, handler)),
      () =>
        Effect.sync(() => {
          ignore(signal)
          process.off(signal, handler)
        })
    )
    const next = Effect.suspend(() => Deferred.await(requested)).pipe(
      Effect.zipRight(Effect.sync(() => {
        requested = Deferred.unsafeMake<void>(FiberId.none)
      }))
    )
    yield* next.pipe(
      Effect.zipRight(
        action.pipe(
          Effect.matchCauseEffect({
            // The lifecycle logs its own failures; a defect must not end the loop, or later signals do nothing.
            onFailure: (cause) => Cause.isFailType(cause) ? Effect.void : Log.error(`${signal} died`, cause),
            onSuccess: (done) => Log.info(`${signal}: ${done}`)
          })
        )
      ),
      Effect.forever,
      Effect.forkScoped
    )
  })

const ignored = new Set<NodeJS.Signals>()
const ignore = (signal: NodeJS.Signals): void => {
  if (ignored.has(signal)) return
  ignored.add(signal)
  process.on(signal, () => {})
}
