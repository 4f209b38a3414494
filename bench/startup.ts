/**
 * Start-up cost of one generation: the same node:http server bare, as a
 * plain Effect app, and with effect-tableflip up to `ready`, each compiled
 * and run with plain `node`. Runs alternate (so a busy moment hits all three
 * alike); each reports its own wall time, CPU and private memory when it
 * serves. Medians of `runs`.
 *
 * On a shared machine those medians swing by ±10% from one round to the
 * next, more than the library's share, so when valgrind is installed the
 * library's probes and their baselines also run once each under callgrind
 * with V8 made deterministic (`--predictable`: one thread, fixed seeds),
 * which counts the instructions a start-up runs. Two counts of the same probe
 * agree to a few in a million.
 *
 *   node --import tsx bench/startup.ts [--runs 15] [--no-instructions]      (after npm run build)
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { effect4Node, effect4Tree, root } from "./lib.js"

export interface Probe {
  readonly wallMs: number
  readonly cpuMs: number
  readonly privateMb: number
  readonly rssMb: number
}

export const PROBES = [
  "bare",
  "effect",
  "effect.layer",
  "tableflip",
  "tableflip.bundle",
  "tableflip.snapshot",
  "tableflip.cache",
  "effect4",
  "effect.layer4",
  "tableflip4"
] as const
export type ProbeName = typeof PROBES[number]

/** The Effect 4 build's probes, built in its tree (`npm run check:effect4`, then `npm run build` there). */
const effect4Probes = Path.join(effect4Tree, "build/bench/probes")
/**
 * Effect 4's rows run when its tree is built with every probe and this Node can run it (22.19 or
 * later). A tree built before a probe was added lacks it: rebuild the tree then.
 */
const effect4 = effect4Node &&
  ["effect.js", "effect.layer.js", "tableflip.js"].every((file) => Fs.existsSync(Path.join(effect4Probes, file)))
const active: ReadonlyArray<ProbeName> = PROBES.filter((name) => effect4 || !name.endsWith("4"))

const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0
const round = (x: number) => Math.round(x * 10) / 10

/** The tableflip probe as a one-file bundle (scripts/bundle.mjs), beside the others. */
const bundle = () =>
  ChildProcess.execFileSync(process.execPath, [
    "scripts/bundle.mjs",
    "build/bench/probes/tableflip.js",
    "build/bench/probes/tableflip.bundle.mjs"
  ], { cwd: root, stdio: "ignore" })

/** The tableflip probe as a V8 start-up snapshot (scripts/snapshot.mjs), built by the node that runs it. */
const snapshot = () =>
  ChildProcess.execFileSync(process.execPath, [
    "scripts/snapshot.mjs",
    "build/bench/probes/tableflip.js",
    "build/bench/probes/tableflip.snapshot.blob"
  ], { cwd: root, stdio: "ignore" })

/**
 * Node's compile cache (Node 22.10 and later), as a generation started by an upgrade finds it:
 * written by the generation before (the library flushes it and passes NODE_COMPILE_CACHE on).
 */
const compileCache = Path.join(root, "build/bench/probes/.compile-cache")

const probeBase = (name: ProbeName): string =>
  name.endsWith("4")
    ? Path.join(effect4Probes, name.slice(0, -1))
    : Path.join(root, "build/bench/probes", name === "tableflip.cache" ? "tableflip" : name)

/** The probe's compiled file (the plain forms only). */
const probeFile = (name: ProbeName): string => `${probeBase(name)}.js`

const probe = (name: ProbeName): Probe => {
  const file = probeBase(name)
  const args = name.endsWith(".snapshot")
    ? ["--snapshot-blob", `${file}.blob`]
    : [name.endsWith(".bundle") ? `${file}.mjs` : `${file}.js`]
  const out = ChildProcess.execFileSync(process.execPath, args, {
    cwd: root,
    encoding: "utf8",
    timeout: 60_000,
    env: name === "tableflip.cache" ? { ...process.env, NODE_COMPILE_CACHE: compileCache } : process.env
  })
  const line = out.split("\n").find((l) => l.startsWith("{\"wallMs\""))
  if (line === undefined) throw new Error(`probe ${name} reported nothing:\n${out}`)
  return JSON.parse(line) as Probe
}

/** The probes counted under callgrind: each build's library and its two baselines. */
const COUNTED: ReadonlyArray<ProbeName> = active.filter((name) =>
  ["effect", "effect.layer", "tableflip", "effect4", "effect.layer4", "tableflip4"].includes(name)
)

const hasValgrind = (): boolean => {
  try {
    ChildProcess.execFileSync("valgrind", ["--version"], { stdio: "ignore" })
    return true
  } catch {
    return false
  }
}

/**
 * The environment of a counted run: fixed and small, so that a count does not move with what
 * `npm run` or the shell adds (the environment is on the process's stack and in its heap).
 */
const countEnv = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/tmp", LANG: "C" }

/** Instructions (millions) one start-up of `name` runs under callgrind; two probes at once, one per core. */
const countOne = (name: ProbeName): Promise<number> =>
  new Promise((resolve, reject) => {
    const child = ChildProcess.execFile(
      "valgrind",
      [
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        process.execPath,
        "--predictable",
        "--random-seed=1",
        "--hash-seed=1",
        probeFile(name)
      ],
      { cwd: root, env: countEnv, timeout: 300_000, maxBuffer: 16 * 2 ** 20 },
      (error, stdout, stderr) => {
        const collected = /Collected : (\d+)/.exec(stderr)?.[1]
        // A probe that failed before serving is counted too, short: only a served one counts.
        if (error !== null || collected === undefined || !stdout.includes("{\"wallMs\"")) {
          return reject(
            new Error(`callgrind: probe ${name} did not serve (${error?.message ?? "no count"}):\n${stderr}`)
          )
        }
        resolve(Math.round(Number(collected) / 1e5) / 10)
      }
    )
    child.stdin?.end()
  })

/**
 * Instruction counts per counted probe, or undefined without valgrind. A probe that failed has no
 * count (its error is logged): one failure does not lose the rest of a bench run.
 */
export const countInstructions = async (): Promise<Partial<Record<ProbeName, number>> | undefined> => {
  if (!hasValgrind()) return undefined
  const counts: Partial<Record<ProbeName, number>> = {}
  for (let i = 0; i < COUNTED.length; i += 2) {
    const pair = COUNTED.slice(i, i + 2)
    const done = await Promise.allSettled(pair.map(countOne))
    pair.forEach((name, j) => {
      const result = done[j]!
      if (result.status === "fulfilled") counts[name] = result.value
      else process.stderr.write(`${String(result.reason)}\n`)
    })
  }
  return counts
}

/** Medians per probe, and the library's cost above the plain Effect app. */
export const measure = (runs: number) => {
  bundle()
  snapshot()
  // Warm: the first run writes the cache (at its exit), as the generation before an upgrade does.
  Fs.rmSync(compileCache, { recursive: true, force: true })
  probe("tableflip.cache")
  const samples = new Map<ProbeName, Array<Probe>>(active.map((name) => [name, []]))
  for (let i = 0; i < runs; i++) for (const name of active) samples.get(name)!.push(probe(name))
  const medians = Object.fromEntries(active.map((name) => {
    const all = samples.get(name)!
    return [name, {
      wallMs: round(median(all.map((p) => p.wallMs))),
      cpuMs: round(median(all.map((p) => p.cpuMs))),
      privateMb: round(median(all.map((p) => p.privateMb))),
      rssMb: round(median(all.map((p) => p.rssMb)))
    }]
  })) as Record<ProbeName, Probe>
  /**
   * The library's cost: its probe against a baseline of the same build. Beside the ratio of
   * medians, the median of each round's own ratio (the two ran seconds apart): a busy stretch of
   * the machine then weighs on both sides of one ratio, not on one median.
   */
  const above = (library: ProbeName, baseline: ProbeName) => {
    const ours = samples.get(library)!
    const theirs = samples.get(baseline)!
    return {
      cpuRatio: Math.round((medians[library].cpuMs / medians[baseline].cpuMs) * 100) / 100,
      pairedCpuRatio: Math.round(median(ours.map((p, i) => p.cpuMs / theirs[i]!.cpuMs)) * 100) / 100,
      cpuAboveMs: round(medians[library].cpuMs - medians[baseline].cpuMs),
      privateAboveMb: round(medians[library].privateMb - medians[baseline].privateMb)
    }
  }
  return {
    runs,
    ...medians,
    library: above("tableflip", "effect"),
    libraryOverLayers: above("tableflip", "effect.layer"),
    ...(effect4 ?
      {
        libraryEffect4: above("tableflip4", "effect4"),
        libraryEffect4OverLayers: above("tableflip4", "effect.layer4")
      } :
      {})
  }
}

const LABELS: Record<ProbeName, string> = {
  bare: "bare node:http",
  effect: "plain Effect app",
  "effect.layer": "the same app with layers (a scoped server service, a second layer, one log line)",
  tableflip: "with effect-tableflip, to ready",
  "tableflip.bundle": "the same, as a one-file bundle (scripts/bundle.mjs)",
  "tableflip.snapshot": "the same, from a V8 start-up snapshot (scripts/snapshot.mjs)",
  "tableflip.cache": "compiled, with Node's compile cache warm (NODE_COMPILE_CACHE; Node 22.10+, ignored before)",
  effect4: "plain Effect app, Effect 4",
  "effect.layer4": "the same app with layers, Effect 4",
  tableflip4: "with effect-tableflip's Effect 4 build, to ready"
}

/** The counts as a table: each build's library over its two baselines. */
export const instructionsMarkdown = (counts: Partial<Record<ProbeName, number>> | undefined): string => {
  if (counts === undefined) return "Instruction counts: skipped (valgrind is not installed).\n"
  const ratio = (a: number | undefined, b: number | undefined) =>
    a === undefined || b === undefined ? "?" : `×${(a / b).toFixed(3)} (+${Math.round(a - b)} M)`
  const count = (name: ProbeName) => counts[name] ?? "failed"
  const row = (label: string, plain: ProbeName, layered: ProbeName, library: ProbeName) =>
    !COUNTED.includes(library) ? [] : [
      `| ${label} | ${count(plain)} | ${count(layered)} | ${count(library)} | ${
        ratio(counts[library], counts[plain])
      } | ${ratio(counts[library], counts[layered])} |`
    ]
  return [
    `Instructions to serving, millions (one run each under \`valgrind --tool=callgrind\`, \`node --predictable\`):`,
    "",
    "| build | plain Effect app | the app with layers | with effect-tableflip | library over plain | library over layers |",
    "|---|---:|---:|---:|---:|---:|",
    ...row("Effect 3", "effect", "effect.layer", "tableflip"),
    ...row("Effect 4", "effect4", "effect.layer4", "tableflip4"),
    ""
  ].join("\n")
}

export const markdown = (result: ReturnType<typeof measure>): string =>
  [
    `Start-up of one generation, compiled, plain \`node\` (medians of ${result.runs} alternating runs):`,
    "",
    "| probe | wall to serving (ms) | CPU (ms) | private memory (MB) | RSS (MB) |",
    "|---|---:|---:|---:|---:|",
    ...active.map((name) => {
      const p = result[name]
      const label = LABELS[name]
      return `| ${label} | ${p.wallMs} | ${p.cpuMs} | ${p.privateMb} | ${p.rssMb} |`
    }),
    "",
    "Above a baseline: the ratio of CPU medians, then the median of each round's own ratio (paired).",
    "",
    `effect-tableflip above the plain Effect app: CPU ×${result.library.cpuRatio}, paired ×${result.library.pairedCpuRatio} (+${result.library.cpuAboveMs} ms), ` +
    `private memory +${result.library.privateAboveMb} MB; above the app with layers: ` +
    `CPU ×${result.libraryOverLayers.cpuRatio}, paired ×${result.libraryOverLayers.pairedCpuRatio} (+${result.libraryOverLayers.cpuAboveMs} ms), ` +
    `private memory +${result.libraryOverLayers.privateAboveMb} MB.`,
    ...(result.libraryEffect4 === undefined ? [] : [
      "",
      `The Effect 4 build above the plain Effect 4 app: CPU ×${result.libraryEffect4.cpuRatio}, paired ×${result.libraryEffect4.pairedCpuRatio} ` +
      `(+${result.libraryEffect4.cpuAboveMs} ms), private memory +${result.libraryEffect4.privateAboveMb} MB; ` +
      `above the Effect 4 app with layers: CPU ×${result.libraryEffect4OverLayers!.cpuRatio}, paired ×${
        result.libraryEffect4OverLayers!.pairedCpuRatio
      } ` +
      `(+${result.libraryEffect4OverLayers!.cpuAboveMs} ms), private memory ` +
      `+${result.libraryEffect4OverLayers!.privateAboveMb} MB.`
    ]),
    ""
  ].join("\n")

if (import.meta.url === `file://${process.argv[1]}`) {
  const runs = Number(process.argv[process.argv.indexOf("--runs") + 1] ?? 15) || 15
  process.stdout.write(markdown(measure(runs)))
  if (!process.argv.includes("--no-instructions")) {
    process.stdout.write(`\n${instructionsMarkdown(await countInstructions())}`)
  }
}
