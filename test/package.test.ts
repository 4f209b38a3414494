/**
 * The package as users get it: `npm pack`, the README's install command in a
 * fresh project, then the programs of the README and its guides (docs/*.md)
 * run with plain `node`, compiled
 * by a strict TypeScript consumer, loaded with `require()`, and the CLI from
 * `npx`. Nothing here reads the repository's sources: only the tarball.
 */
import { assert, beforeAll, describe, it } from "@effect/vitest"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Http from "node:http"
import * as Path from "node:path"
import { freePort, generations, root, Run, tempDir } from "./helpers/fixture.js"
import { get, readPid } from "./helpers/http.js"

const { track } = generations()
const readme = Fs.readFileSync(Path.join(root, "README.md"), "utf8")
/** The guides beside the README (docs/*.md; not the generated docs/api), in name order. */
const guides = Fs.readdirSync(Path.join(root, "docs"))
  .filter((file) => file.endsWith(".md"))
  .sort()
  .map((file) => Fs.readFileSync(Path.join(root, "docs", file), "utf8"))

/** The Effect major this build is for (3 at the root, 4 in the Effect 4 tree), from the package.json it runs under. */
const effectMajor = (JSON.parse(Fs.readFileSync(Path.join(root, "package.json"), "utf8")) as {
  devDependencies: Record<string, string>
}).devDependencies["effect"]!.replace(/^\D*/, "").split(".")[0]

/**
 * The fenced blocks of one language in the README, then in each guide, in order: the quick start first.
 * A block for one major only says so in its info string (```ts effect3, ```ts effect4): it counts
 * under that major's build alone.
 */
const blocks = (language: string): Array<string> =>
  [readme, ...guides].flatMap((text) =>
    [...text.matchAll(new RegExp("```" + language + "(?: effect(\\d+))?\\n([\\s\\S]*?)```", "g"))]
      .filter((match) => match[1] === undefined || match[1] === effectMajor)
      .map((match) => match[2]!)
  )

/** The README's TypeScript install line for this build: the last `npm install` of the Install section with its effect@major. */
const installWords = (): Array<string> => {
  const section = readme.slice(readme.indexOf("## Install"), readme.indexOf("## Quick start"))
  const lines = section.split("\n").filter((line) =>
    line.startsWith("npm install effect-tableflip") && line.split(/\s+/).includes(`effect@${effectMajor}`)
  )
  assert.isAbove(
    lines.length,
    0,
    `the README's Install section has an \`npm install effect-tableflip ... effect@${effectMajor}\` line`
  )
  return lines.at(-1)!.split(/\s+/).slice(2)
}

/** Every README and guide program: a TypeScript block that imports the package and runs itself. */
const programs = blocks("ts").filter((block) =>
  /^import .* from "effect-tableflip[/"]/m.test(block) && block.includes("NodeRuntime.runMain")
)

const exec = (command: string, args: ReadonlyArray<string>, cwd: string) => {
  const result = ChildProcess.spawnSync(command, args, { cwd, encoding: "utf8", env: { ...process.env, CI: "1" } })
  return { code: result.status, stdout: result.stdout, stderr: result.stderr, all: result.stdout + result.stderr }
}

const npm = (args: ReadonlyArray<string>, cwd: string) => {
  const result = exec("npm", [...args, "--no-audit", "--no-fund", "--prefer-offline"], cwd)
  if (result.code !== 0) throw new Error(`npm ${args.join(" ")} failed in ${cwd}:\n${result.all}`)
  return result
}

const project = (name: string, type: "module" | "commonjs") => {
  const dir = tempDir()
  Fs.writeFileSync(Path.join(dir, "package.json"), JSON.stringify({ name, private: true, type }))
  return dir
}

let tarball = ""
let packed: ReadonlyArray<string> = []
let app = ""

beforeAll(() => {
  // `npm test` builds first; packing with --ignore-scripts packs that build rather than rebuilding
  // dist/ under the other test files that run from it.
  const destination = tempDir()
  const result = npm(["pack", "--ignore-scripts", "--json", "--pack-destination", destination], root)
  const [info] = JSON.parse(result.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>
  tarball = Path.join(destination, info!.filename)
  packed = info!.files.map((file) => file.path)
  app = project("consumer", "module")
  // `effect-tableflip` or a tagged `effect-tableflip@effect3`: either way, this build's tarball.
  npm(["install", ...installWords().map((word) => (/^effect-tableflip(@|$)/.test(word) ? tarball : word))], app)
}, 300_000)

/**
 * Runs a program from the package on a free port, upgrades it with SIGHUP
 * and stops it with SIGTERM; every generation must answer in between.
 */
const serveUpgradeStop = async (
  file: string,
  args: (port: number, pidFile: string) => ReadonlyArray<string>,
  pidFile = Path.join(tempDir(), "app.pid")
) => {
  const port = await freePort()
  const run = track(
    new Run(file, args(port, pidFile), { plain: true, cwd: app, env: { PORT: String(port), PID_FILE: pidFile } })
  )
  await run.waitForLine(/(: |message=)ready\b/)
  const agent = new Http.Agent({ keepAlive: false })
  const first = readPid(pidFile)
  assert.strictEqual((await get(port, agent)).body, `hello from pid ${first}\n`)
  // Not `upgrade` from helpers/http: its "SIGHUP: upgraded to pid" line comes from the signal's fiber,
  // which an app that exits as soon as `exit` completes (the quick start) may end before it logs, as
  // Effect 4 does. The lifecycle's own line is logged before `exit` completes.
  const from = run.output.length
  process.kill(first, "SIGHUP")
  await run.waitForLine(/upgraded to generation \d+ \(pid \d+\)/, from)
  await run.waitForLine(new RegExp(`previous generation \\(pid ${first}\\) has exited`), from)
  assert.strictEqual(await run.exited(), 0, "the first generation exits 0 once the second is ready")
  const second = readPid(pidFile)
  assert.notStrictEqual(second, first)
  assert.strictEqual((await get(port, agent)).body, `hello from pid ${second}\n`)
  process.kill(second, "SIGTERM")
  await run.ended()
  assert.match(run.output.join("\n"), /stopped/)
}

describe("the packed package", () => {
  it("holds the compiled build, its types and the prebuilt addon, and nothing of the repository's own", () => {
    for (const file of ["dist/index.js", "dist/index.d.ts", "dist/Upgrader.d.ts.map", "dist/Upgrader.js.map"]) {
      assert.include(packed, file)
    }
    for (const file of ["LICENSE", "README.md", "bin/effect-tableflip.mjs", "native/tableflip.c"]) {
      assert.include(packed, file)
    }
    if (process.platform === "linux" && process.arch === "x64") {
      assert.include(packed, "prebuilds/linux-x64/tableflip.node")
    }
    const stray = packed.filter((file) => /^(test|examples|bench|scratchpad|build|native\/build)\//.test(file))
    assert.deepStrictEqual(stray, [])
    const manifest = JSON.parse(Fs.readFileSync(Path.join(app, "node_modules/effect-tableflip/package.json"), "utf8"))
    for (const target of Object.values(manifest.exports as Record<string, unknown>)) {
      if (typeof target !== "object" || target === null) continue
      for (const file of Object.values(target)) {
        assert.notMatch(String(file), /\.ts$(?<!\.d\.ts)/, "exports point at compiled JavaScript")
        assert.isTrue(Fs.existsSync(Path.join(app, "node_modules/effect-tableflip", String(file))), String(file))
      }
    }
  })

  it("runs the README's quick start as app.mjs with plain node: serves, upgrades on SIGHUP, exits on SIGTERM", async () => {
    Fs.writeFileSync(Path.join(app, "app.mjs"), programs[0]!)
    await serveUpgradeStop("app.mjs", () => [], Path.join(app, "app.pid"))
  })

  // A deadline, not a wait: tsc with skipLibCheck off reads all of Effect's .d.ts, over a minute when
  // two suites share the 2 cores.
  it(
    "compiles a strict TypeScript consumer and every README and guide program against the .d.ts, and runs them",
    async () => {
      Fs.writeFileSync(
        Path.join(app, "tsconfig.json"),
        JSON.stringify({
          compilerOptions: {
            module: "nodenext",
            target: "es2022",
            strict: true,
            skipLibCheck: false,
            noPropertyAccessFromIndexSignature: true,
            exactOptionalPropertyTypes: true,
            noImplicitReturns: true,
            outDir: "out",
            types: ["node"]
          },
          include: ["src"]
        })
      )
      Fs.mkdirSync(Path.join(app, "src"), { recursive: true })
      programs.forEach((program, i) => Fs.writeFileSync(Path.join(app, "src", `readme-${i}.ts`), program))
      Fs.writeFileSync(Path.join(app, "src", "consumer.ts"), CONSUMER)
      const tsc = exec(process.execPath, [Path.join(app, "node_modules/typescript/bin/tsc"), "-p", "."], app)
      assert.strictEqual(tsc.code, 0, tsc.all)
      const consumer = exec(process.execPath, ["out/consumer.js"], app)
      assert.strictEqual(consumer.code, 0, consumer.all)
      assert.include(consumer.stdout, "caught UpgradeInProgress")
      // The quick start (PORT, app.pid in its directory) and the platform example (--port, --pid-file).
      await serveUpgradeStop("out/readme-0.js", () => [], Path.join(app, "app.pid"))
      const platform = programs.findIndex((program) => program.includes("HttpRouter"))
      const example = Fs.readFileSync(Path.join(root, "examples/http-platform.ts"), "utf8")
      assert.strictEqual(
        programs[platform],
        example.slice(example.indexOf("*/\n") + 3),
        "docs/http.md's platform program = examples/http-platform.ts"
      )
      await serveUpgradeStop(
        `out/readme-${platform}.js`,
        (port, pidFile) => ["--port", String(port), "--pid-file", pidFile]
      )
    },
    240_000
  )

  it("loads with require() on Node 20.19 and later", () => {
    const result = exec(process.execPath, [
      "-e",
      "const t = require('effect-tableflip'); const u = require('effect-tableflip/Upgrader');" +
      "console.log(Object.keys(t).sort().join(','), typeof u.layer)"
    ], app)
    assert.strictEqual(result.code, 0, result.all)
    assert.include(result.stdout, "Drain,Fds")
    assert.include(result.stdout, "Upgrader,UpgraderTest,Warmup function")
  })

  it("runs the CLI from npx with nothing but the package installed", () => {
    const bare = project("bare", "commonjs")
    npm(["install", tarball], bare)
    const help = exec("npx", ["--no-install", "effect-tableflip", "--help"], bare)
    assert.strictEqual(help.code, 0, help.all)
    assert.match(help.stdout, /effect-tableflip run/)
    assert.notInclude(help.stdout, "\u001b[", "plain text when not a terminal")
    const wrong = exec("npx", ["--no-install", "effect-tableflip", "run", "--pidfile", "x", "--", "true"], bare)
    assert.strictEqual(wrong.code, 2)
    assert.include(wrong.stderr, "--pidfile")
  })

  it("runs the quick start under the runner from npx: upgrade command, then SIGTERM ends it with the app's code", async () => {
    if (!Fs.existsSync(Path.join(app, "app.mjs"))) Fs.writeFileSync(Path.join(app, "app.mjs"), programs[0]!)
    const port = await freePort()
    const pidFile = Path.join(tempDir(), "runner.pid")
    const bin = Path.join(app, "node_modules/effect-tableflip/bin/effect-tableflip.mjs")
    const run = track(
      new Run(bin, ["run", "--pid-file", pidFile, "--", process.execPath, "app.mjs"], {
        plain: true,
        cwd: app,
        env: { PORT: String(port) }
      })
    )
    await run.waitForLine(/(: |message=)ready\b/)
    const agent = new Http.Agent({ keepAlive: false })
    const first = Number(/pid (\d+)/.exec((await get(port, agent)).body)![1])
    const upgraded = exec("npx", ["--no-install", "effect-tableflip", "upgrade", "--pid-file", pidFile], app)
    assert.strictEqual(upgraded.code, 0, upgraded.all)
    assert.match(upgraded.stdout, /^upgraded: pid \d+ -> \d+/)
    const second = Number(/pid (\d+)/.exec((await get(port, agent)).body)![1])
    assert.notStrictEqual(second, first)
    run.process.kill("SIGTERM")
    assert.strictEqual(await run.exited(), 0)
  })
})

/** A consumer that touches the public types a user reaches for first. */
const CONSUMER = `
import * as Effect from "effect/Effect"
import * as Http from "node:http"
import { Drain, Fds, Upgrader, UpgradeError, UpgraderTest } from "effect-tableflip"

const app = Effect.gen(function*() {
  const upgrader = yield* Upgrader.Upgrader
  const server = yield* Fds.listen({ host: "127.0.0.1", port: 0 }, Http.createServer((_req, res) => res.end("ok")))
  yield* Drain.http(server, { deadline: "1 second" })
  yield* upgrader.ready
  const outcome = yield* upgrader.upgrade.pipe(
    Effect.map(({ pid }) => \`upgraded to \${pid}\`),
    Effect.catchTag("UpgradeInProgress", (error: UpgradeError.UpgradeInProgress) =>
      Effect.succeed(\`caught \${error._tag} (\${error.message})\`))
  )
  yield* UpgraderTest.triggerExit("stopped")
  const reason: Upgrader.ExitReason = yield* upgrader.exit
  return \`\${outcome}; exit: \${reason}\`
})

const TestLive = UpgraderTest.layer({ upgrade: Effect.fail(new UpgradeError.UpgradeInProgress({ childPid: 42 })) })

Effect.runPromise(app.pipe(Effect.scoped, Effect.provide(TestLive))).then((result) => console.log(result))
`
