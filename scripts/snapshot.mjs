#!/usr/bin/env node
// A V8 start-up snapshot of a compiled app: every generation starts with effect, effect-tableflip
// and the app's other packages already loaded and initialized in its heap, instead of reading,
// compiling and running their modules.
//
//   node scripts/snapshot.mjs <app.js> <out.blob>      (npm run snapshot: the compiled http-server example)
//   EFFECT_TABLEFLIP_ADDON=<dir of out.blob>/tableflip.node node --snapshot-blob <out.blob> -- --port 8080
//
// Build the blob with the node binary that runs it: a blob only loads in the same Node version
// (and, on Node 20, with the same V8 flags).
//
// How the app becomes a snapshot:
// - `node --build-snapshot` runs one CommonJS script that may require only Node's own modules, so
//   the app is bundled with esbuild into <out>.cjs beside the blob (kept, to read when debugging).
// - The packages the app imports are initialized while the snapshot is built; the app's own
//   modules run in the deserialize main function, when the process starts: its top level reads
//   argv and env, listens and runs main, none of which belongs in a snapshot (no handle may be
//   open when it is taken). An unchanged app works: nothing has to be restructured.
// - Node's modules that its snapshot builder does not support (node:http cannot even be loaded
//   then) are loaded on first use instead: the bundle sees an object of getters. Using one while
//   the snapshot is built fails the build with a message naming it.
// - A snapshot process has no script: Node puts the first argument in argv[1]. The main function
//   puts "--" there, so that the app reads its arguments from argv.slice(2) as usual, and an upgrade
//   re-executes `node <execArgv> ...argv.slice(1)` = `node --snapshot-blob <out.blob> -- <arguments>`:
//   the next generation starts from the same blob.
// - `import.meta.url` does not exist in CommonJS; it is the bundle's URL (only the native addon's
//   default place uses it: set EFFECT_TABLEFLIP_ADDON, as for a bundle). The addon is copied
//   beside the blob.
import { build } from "esbuild"
import * as ChildProcess from "node:child_process"
import { copyFileSync, existsSync, mkdirSync, renameSync, rmSync } from "node:fs"
import { builtinModules, createRequire } from "node:module"
import { basename, dirname, join, resolve } from "node:path"
import { prebuiltAddon } from "./prebuilt.mjs"

const [entry, out] = process.argv.slice(2)
if (entry === undefined || out === undefined) {
  console.error("usage: node scripts/snapshot.mjs <app.js> <out.blob>")
  process.exit(2)
}
const app = resolve(entry)
const blob = resolve(out)
const script = join(dirname(blob), `${basename(blob, ".blob")}.cjs`)
mkdirSync(dirname(blob), { recursive: true })

// Node's modules that load while a snapshot is built without a warning (measured on Node 20.19 and 24).
const EAGER = new Set([
  "assert",
  "buffer",
  "crypto",
  "events",
  "fs",
  "net",
  "os",
  "path",
  "stream",
  "string_decoder",
  "timers",
  "url",
  "util",
  "v8",
  "zlib"
])
const builtin = (specifier) => {
  const name = specifier.replace(/^node:/, "")
  return builtinModules.includes(name) || builtinModules.includes(name.split("/")[0]) ? name : undefined
}

// The packages the app (and its own modules) import: initialized while the snapshot is built.
const scan = await build({
  entryPoints: [app],
  bundle: true,
  write: false,
  metafile: true,
  platform: "node",
  format: "esm",
  packages: "external",
  logLevel: "error"
})
const packages = [
  ...new Set(
    Object.values(scan.metafile.inputs).flatMap((input) =>
      input.imports.filter((i) => i.external && builtin(i.path) === undefined).map((i) => i.path)
    )
  )
].sort()

const main = [
  "const v8 = require(\"node:v8\")",
  ...packages.map((p) => `require(${JSON.stringify(p)})`),
  "v8.startupSnapshot.setDeserializeMainFunction(() => {",
  "  process.argv.splice(1, 0, \"--\")",
  `  require(${JSON.stringify(app)})`,
  "})"
].join("\n")

const nodeRequire = createRequire(import.meta.url)
const lazyBuiltins = {
  name: "lazy-builtins",
  setup(build) {
    build.onResolve({ filter: /^[a-z_:/]+$/ }, (args) => {
      const name = builtin(args.path)
      if (name === undefined) return undefined
      if (args.namespace === "lazy-builtin" || EAGER.has(name.split("/")[0])) return { path: args.path, external: true }
      return { path: name, namespace: "lazy-builtin" }
    })
    build.onLoad({ filter: /.*/, namespace: "lazy-builtin" }, (args) => {
      const keys = Object.keys(nodeRequire(`node:${args.path}`))
      return {
        loader: "js",
        contents: [
          "const v8 = require(\"node:v8\")",
          "let loaded",
          "const load = () => {",
          "  if (loaded !== undefined) return loaded",
          "  if (v8.startupSnapshot.isBuildingSnapshot()) {",
          `    throw new Error("node:${args.path} was used while the snapshot was being built: ` +
          `use it in the app's main (it runs when the process starts), not when its module loads")`,
          "  }",
          `  return (loaded = require("node:${args.path}"))`,
          "}",
          `for (const key of ${JSON.stringify(keys)}) {`,
          "  Object.defineProperty(exports, key, { enumerable: true, get: () => load()[key] })",
          "}"
        ].join("\n")
      }
    })
  }
}

await build({
  stdin: { contents: main, resolveDir: dirname(app), sourcefile: "snapshot-main.cjs", loader: "js" },
  outfile: script,
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node20",
  define: { "import.meta.url": "__snapshotUrl" },
  banner: { js: "var __snapshotUrl = require(\"node:url\").pathToFileURL(__filename).href;" },
  plugins: [lazyBuiltins],
  logLevel: "warning"
})

// Written beside and renamed over the blob (and the addon), as a deploy replaces them: a generation
// starting meanwhile reads the old or the new file, never half of one, and a running one that mapped
// the old addon keeps its own.
const temp = `${blob}.${process.pid}.tmp`
const built = ChildProcess.spawnSync(process.execPath, ["--snapshot-blob", temp, "--build-snapshot", script], {
  stdio: "inherit"
})
if (built.status !== 0) {
  rmSync(temp, { force: true })
  console.error(`building the snapshot of ${script} failed (${built.status ?? built.signal})`)
  process.exit(1)
}
renameSync(temp, blob)
const addon = prebuiltAddon
if (existsSync(addon)) {
  const copy = join(dirname(blob), "tableflip.node")
  copyFileSync(addon, `${copy}.${process.pid}.tmp`)
  renameSync(`${copy}.${process.pid}.tmp`, copy)
}
console.log(`snapshot of ${entry} in ${out} (node ${process.version}): node --snapshot-blob ${out} -- <arguments>`)
