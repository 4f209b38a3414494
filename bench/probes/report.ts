/**
 * What a start-up probe reports once it serves: wall time since the process
 * began, CPU used, and private memory (what this process does not share with
 * others: the cost of one more generation), as one JSON line, then it exits.
 */
import * as Fs from "node:fs"

export const report = (): never => {
  const cpu = process.cpuUsage()
  const rollup = Fs.readFileSync("/proc/self/smaps_rollup", "utf8")
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+)`, "m").exec(rollup)?.[1] ?? 0)
  process.stdout.write(
    `${
      JSON.stringify({
        wallMs: performance.now(),
        cpuMs: (cpu.user + cpu.system) / 1000,
        privateMb: (kb("Private_Clean") + kb("Private_Dirty")) / 1024,
        rssMb: kb("Rss") / 1024
      })
    }\n`
  )
  process.exit(0)
}
