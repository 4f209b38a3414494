/**
 * The `effect-tableflip` command as an operator runs it, from the sources.
 */
import * as ChildProcess from "node:child_process"
import { root } from "./fixture.js"

/** A CLI run: resolves with its exit code and output once it exits. */
export const cli = (args: ReadonlyArray<string>) =>
  new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = ChildProcess.spawn(process.execPath, ["--import", "tsx", "src/bin.ts", ...args], {
      cwd: root,
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk))
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk))
    child.once("exit", (code) => resolve({ code, stdout, stderr }))
  })
