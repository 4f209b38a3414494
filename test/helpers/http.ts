/**
 * HTTP clients for the examples: GET, upgrades by SIGHUP through the PID
 * file, and client loops that record every failure.
 */
import * as Fs from "node:fs"
import * as Http from "node:http"
import * as Path from "node:path"
import { freePort, Run, tempDir } from "./fixture.js"

export const get = (port: number, agent: Http.Agent, path = "/", headers: Http.OutgoingHttpHeaders = {}) =>
  new Promise<{ status: number; body: string }>((resolve, reject) => {
    Http.get({ host: "127.0.0.1", port, path, agent, headers }, (response) => {
      let body = ""
      response.setEncoding("utf8").on("data", (chunk: string) => (body += chunk))
      response.on("end", () => resolve({ status: response.statusCode!, body }))
      response.on("error", reject)
    }).on("error", reject)
  })

export const readPid = (file: string): number => Number(Fs.readFileSync(file, "utf8"))

/** Starts an example (tracked by `track`) on a free port with a PID file, and waits until generation 1 is ready. */
export const startWith = (track: (run: Run) => Run) => async (file: string, args: ReadonlyArray<string> = []) => {
  const port = await freePort()
  const pidFile = Path.join(tempDir(), "app.pid")
  const run = track(new Run(file, ["--port", String(port), "--pid-file", pidFile, ...args]))
  // The log line of `ready`, in the pretty (terminal) or the logfmt format.
  await run.waitForLine(/(: |message=)ready\b/)
  return { run, port, pidFile }
}

/** SIGHUP to the generation in the PID file; resolves once the next one serves alone. */
export const upgrade = async (run: Run, pidFile: string) => {
  const from = run.output.length
  const old = readPid(pidFile)
  process.kill(old, "SIGHUP")
  await run.waitForLine(/SIGHUP: upgraded to pid \d+/, from)
  await run.waitForLine(new RegExp(`previous generation \\(pid ${old}\\) has exited`), from)
}

/** Clients looping until `done()`: keep-alive ones and `Connection: close` ones. */
export const load = (port: number, clients: { readonly keepAlive: number; readonly close: number }) => {
  let done = false
  const failures: Array<string> = []
  const pids = new Set<number>()
  let requests = 0
  const client = async (keepAlive: boolean) => {
    const agent = new Http.Agent({ keepAlive, maxSockets: 1 })
    while (!done) {
      try {
        const { body, status } = await get(port, agent, "/", keepAlive ? {} : { connection: "close" })
        requests++
        if (status !== 200) failures.push(`status ${status}`)
        pids.add(Number(/pid (\d+)/.exec(body)?.[1]))
      } catch (error) {
        failures.push((error as NodeJS.ErrnoException).code ?? String(error))
      }
    }
    agent.destroy()
  }
  const all = Promise.all([
    ...Array.from({ length: clients.keepAlive }, () => client(true)),
    ...Array.from({ length: clients.close }, () => client(false))
  ])
  return {
    stop: async () => {
      done = true
      await all
      return { failures, pids, requests }
    }
  }
}
