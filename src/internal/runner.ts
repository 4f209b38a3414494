/**
 * The stable-PID runner: one process for the life of the service that keeps
 * the listening sockets, starts every generation of the app as its own child
 * through the handover protocol, and turns SIGHUP into an upgrade. The app's
 * generations hand their listeners up at `ready`; the runner never accepts on
 * them, it only keeps them open, so between generations (or while none runs)
 * connections wait in the kernel's queue instead of being refused.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import * as PidFile from "../PidFile.js"
import { SpawnError } from "../UpgradeError.js"
import * as Fx from "./fx.js"
import * as Handles from "./handles.js"
import * as Log from "./log.js"
import * as Reaper from "./reaper.js"
import * as Fleet from "./runner/fleet.js"
import * as Steps from "./runner/steps.js"

/** @internal */
export interface Options {
  /** The app's command line: executable, then its arguments. */
  readonly command: ReadonlyArray<string>
  readonly pidFile?: string | undefined
  readonly upgradeTimeout: Duration.Duration
  readonly probation: Duration.Duration
}

const STOP_SIGNALS = ["SIGTERM", "SIGINT", "SIGQUIT"] as const
const FORWARDED = ["SIGUSR1", "SIGUSR2", "SIGWINCH"] as const

/**
 * Runs the app until it exits or is stopped; succeeds with the exit code the
 * runner should exit with (the app's).
 *
 * @internal
 */
export const run = Effect.fnUntraced(function*(options: Options) {
  Log.identify("runner")
  const [execPath, ...args] = options.command
  if (execPath === undefined) return yield* new SpawnError({ command: "", cause: "no command to run" })
  const env = { ...process.env }
  // The runner is the service's main pid: only it speaks to systemd.
  delete env.NOTIFY_SOCKET
  const fleet = yield* Fleet.make({ ...options, command: { execPath, args, cwd: process.cwd(), env } })
  yield* handleSignals(fleet)
  // As PID 1 (a container), orphans of the app are re-parented here and must be reaped.
  yield* Reaper.install(fleet.live)
  if (options.pidFile !== undefined) {
    const pidFile = options.pidFile
    // Whatever way the runner ends, the PID file leaves with it (unless it names another process by then).
    yield* Effect.acquireRelease(
      PidFile.write(pidFile),
      () => PidFile.removeIfOwn(pidFile).pipe(Fx.catchAll((error) => Log.warning(error.message)))
    )
  }
  const started = yield* Steps.startFirst(fleet, options.command.join(" "))
  if (started !== undefined) return started
  const code = yield* Deferred.await(fleet.finished)
  // Drained generations may still be finishing; the runner leaves last.
  yield* Fleet.stop(fleet, "exit")
  yield* Effect.forEach([...fleet.live], (child) => Deferred.await(child.exited), { discard: true })
  for (const { handle } of fleet.held.values()) Handles.closeHandle(handle)
  return code
})

/**
 * SIGHUP upgrades (folded, as in `Upgrader.layerSignal`: the ones during an
 * upgrade make one more after it), SIGTERM, SIGINT and SIGQUIT stop, and
 * SIGUSR1, SIGUSR2 and SIGWINCH go to the serving generation.
 */
const handleSignals = (fleet: Fleet.Fleet) =>
  Effect.gen(function*() {
    const requests = yield* Queue.dropping<void>(1)
    yield* Queue.take(requests).pipe(
      Effect.andThen(Effect.ignore(Steps.recorded(fleet, "upgrade"))),
      Effect.forever,
      Effect.forkScoped
    )
    const onSignal = (signal: NodeJS.Signals) => () => {
      if (signal === "SIGHUP") Fx.offerUnsafe(requests, undefined)
      else if ((STOP_SIGNALS as ReadonlyArray<string>).includes(signal)) fleet.runFork(Fleet.stop(fleet, signal))
      else if (fleet.current !== undefined && fleet.live.has(fleet.current.child)) {
        try {
          process.kill(fleet.current.child.pid, signal)
        } catch {
          // It exited meanwhile.
        }
      }
    }
    const handlers = [...STOP_SIGNALS, ...FORWARDED, "SIGHUP" as const].map((signal) =>
      [signal, onSignal(signal)] as const
    )
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        for (const [signal, handler] of handlers) process.on(signal, handler)
      }),
      () =>
        Effect.sync(() => {
          for (const [signal, handler] of handlers) process.off(signal, handler)
        })
    )
  })
