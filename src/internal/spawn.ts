/**
 * Starting the next generation and reading its control channel.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ChildProcess from "node:child_process"
import type * as Net from "node:net"
import { SpawnError } from "../UpgradeError.js"
import * as Protocol from "./protocol.js"

/**
 * How the next generation is started.
 *
 * @internal
 */
export interface Command {
  readonly execPath: string
  readonly args: ReadonlyArray<string>
  readonly cwd: string
  readonly env: Readonly<Record<string, string | undefined>>
}

/** @internal */
export interface Exited {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

/** @internal */
export interface Child {
  readonly pid: number
  /** Completes when the child sends its ready frame. */
  readonly ready: Deferred.Deferred<void>
  /** Completes when the child has exited and been reaped. */
  readonly exited: Deferred.Deferred<Exited>
  /** SIGKILL, then wait (bounded) until the child is reaped. */
  readonly kill: Effect.Effect<void>
  /** Lets the child outlive this process; keeps this end of the control channel open until exit. */
  readonly detach: Effect.Effect<void>
}

/**
 * The parent's ends of the control channels of generations it handed over to.
 * Each must stay open until this process dies: its end-of-file is how the new
 * generation learns the old one is gone. Held here so nothing can collect it.
 */
const retained = new Set<Net.Socket>()

/** @internal */
export const spawn = (
  command: Command,
  manifest: Protocol.Manifest,
  fds: ReadonlyArray<number>
): Effect.Effect<Child, SpawnError> =>
  Effect.gen(function*() {
    const ready = yield* Deferred.make<void>()
    const exited = yield* Deferred.make<Exited>()
    const label = [command.execPath, ...command.args].join(" ")
    return yield* Effect.async<ChildProcess.ChildProcess, SpawnError>((resume) => {
      let child: ChildProcess.ChildProcess
      try {
        child = ChildProcess.spawn(command.execPath, command.args as Array<string>, {
          cwd: command.cwd,
          env: { ...command.env, [Protocol.ENV]: Protocol.encode(manifest) },
          stdio: ["inherit", "inherit", "inherit", "pipe", ...fds]
        })
      } catch (cause) {
        return resume(Effect.fail(new SpawnError({ command: label, cause })))
      }
      if (child.pid === undefined) {
        child.once("error", (cause) => resume(Effect.fail(new SpawnError({ command: label, cause }))))
        return
      }
      resume(Effect.succeed(child))
    }).pipe(Effect.map((child): Child => {
      const pid = child.pid!
      const control = child.stdio[Protocol.CONTROL_FD] as Net.Socket
      child.once("exit", (code, signal) => Deferred.unsafeDone(exited, Effect.succeed({ code, signal })))
      // A failed kill or a broken channel is reported through "exit"; an unheard 'error' would crash us.
      child.on("error", () => {})
      control.on("error", () => {})
      readFrames(control, (frame) => {
        if (frame.type === "ready") Deferred.unsafeDone(ready, Effect.void)
      })
      return {
        pid,
        ready,
        exited,
        kill: Effect.suspend(() => {
          child.kill("SIGKILL")
          return Deferred.await(exited)
        }).pipe(
          // Runs from finalizers, which are uninterruptible: the timeout needs this to bite.
          Effect.interruptible,
          Effect.timeoutFail({
            duration: Duration.seconds(10),
            onTimeout: () => new Error(`pid ${pid} was not reaped 10 s after SIGKILL`)
          }),
          Effect.catchAll((error) => Effect.logError(error.message)),
          Effect.ensuring(Effect.sync(() => control.destroy()))
        ),
        detach: Effect.sync(() => {
          retained.add(control)
          control.unref()
          child.unref()
        })
      }
    }))
  })

/** @internal */
export interface Frame {
  readonly type: string
}

/** Newline-delimited JSON frames; anything unparseable is ignored. */
export const readFrames = (socket: Net.Socket, onFrame: (frame: Frame) => void): void => {
  let buffer = ""
  socket.setEncoding("utf8")
  socket.on("data", (chunk: string) => {
    buffer += chunk
    let newline = buffer.indexOf("\n")
    while (newline !== -1) {
      const line = buffer.slice(0, newline)
      buffer = buffer.slice(newline + 1)
      newline = buffer.indexOf("\n")
      try {
        const frame = JSON.parse(line) as unknown
        if (typeof frame === "object" && frame !== null && typeof (frame as Frame).type === "string") {
          onFrame(frame as Frame)
        }
      } catch {
        // Not a frame.
      }
    }
  })
}

/** @internal */
export const encodeFrame = (frame: Frame): string => `${JSON.stringify(frame)}\n`
