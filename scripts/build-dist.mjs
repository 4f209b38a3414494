#!/usr/bin/env node
// Folds the modules every app loads into one file, after `tsc` has written dist/ (npm run build).
//
// Node's ESM loader pays per module (resolve, read, compile, link): the ~20 files behind
// Upgrader, Fds and Drain cost a new generation more CPU than their code. So the "core" -- the
// public modules an app starts with and everything they import -- is bundled by esbuild into
// dist/internal/core.js, and each of their dist/*.js files becomes a one-line re-export from it:
// every import path (the package `exports` map, dist/internal/*.js) still works, with one copy of
// every class and Context tag. Features that load more of Effect (State: Schema; HttpServer:
// @effect/platform; DirectoryUpgrader: FiberSet; the CLI) stay tsc's own files and load only when
// imported. `effect`, `@effect/*` and Node's modules stay external: the app's own instances.
//
// What loads later stays out: a dynamic `import()` (the upgrade path, lifecycle/attempt.js, loaded
// at the first upgrade or prepare) is left to Node, so its tsc file and what only it imports (the
// metrics) are not in the core. Each such target is then bundled on its own, over its tsc file,
// importing the core's part from the core (step 5): one more file at the first upgrade, not ten. Effect's modules are marked free of side effects, as Effect's
// package.json says, so the core imports only those its code uses: an Effect module costs the
// loader a file whether or not anything calls it. For the same reason internal/fx.js (aliases and
// adapters, nothing whose identity matters) is inlined rather than re-exported: the core keeps
// only the adapters it calls, and tsc's fx.js serves the modules outside the core.
//
// The bundle's source map chains through tsc's maps back to src/*.ts; tsc's .d.ts and .d.ts.map
// files are untouched. Run after `tsc -p tsconfig.build.json`, which rewrites every dist/*.js.
import { build } from "esbuild"
import { readFileSync, writeFileSync } from "node:fs"
import { dirname, join, relative } from "node:path"
import { fileURLToPath } from "node:url"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const dist = join(root, "dist")
const CORE = "internal/core.js"

// The public modules of an app's start, up to `ready`. Whatever they import joins them.
const ROOTS = ["Upgrader.js", "Fds.js", "Drain.js", "UpgradeError.js", "PidFile.js"]

// Bundled into the core for its own use, but not re-exported from it (see above).
const INLINED = ["internal/fx.js"]

const STUB_MARK = "// effect-tableflip: re-exports from the bundled core"

for (const file of ROOTS) {
  if (readFileSync(join(dist, file), "utf8").startsWith(STUB_MARK)) {
    throw new Error(`dist/${file} is already a re-export stub: run tsc -p tsconfig.build.json first`)
  }
}

/** Effect's modules and dynamic imports stay Node's to load (see above). */
const lazy = new Set()
const outside = {
  name: "outside",
  setup(build) {
    build.onResolve(
      { filter: /^(effect|@effect\/)/ },
      (args) => ({ path: args.path, external: true, sideEffects: false })
    )
    build.onResolve({ filter: /.*/ }, (args) => {
      if (args.kind !== "dynamic-import") return undefined
      lazy.add(join(args.resolveDir, args.path))
      const from = relative(dirname(join(dist, CORE)), join(args.resolveDir, args.path))
      return { path: from.startsWith(".") ? from : `./${from}`, external: true }
    })
  }
}
const common = {
  absWorkingDir: root,
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  plugins: [outside],
  logLevel: "warning"
}

// 1. Which of tsc's files the roots reach: the core.
const reach = await build({
  ...common,
  stdin: { contents: ROOTS.map((file, i) => `export * as m${i} from "./${file}"`).join("\n"), resolveDir: dist },
  write: false,
  metafile: true
})
const core = Object.keys(reach.metafile.inputs)
  .map((input) => relative(dist, join(root, input)))
  .filter((file) => !file.startsWith(".."))
  .sort()

// A stub re-exports names it knows: `export *` in a core module would hide some.
for (const file of core) {
  if (/^export \*/m.test(readFileSync(join(dist, file), "utf8"))) {
    throw new Error(`dist/${file} has \`export *\`: list its exports, or keep it out of the core`)
  }
}

// 2. What each exports (tsc's JavaScript: runtime exports only, no types).
const scan = await build({
  entryPoints: core.map((file) => join(dist, file)),
  outdir: join(root, "build", "dist-scan"),
  absWorkingDir: root,
  bundle: false,
  format: "esm",
  write: false,
  metafile: true,
  logLevel: "warning"
})
const exportsOf = new Map()
for (const output of Object.values(scan.metafile.outputs)) {
  if (output.entryPoint === undefined) continue
  exportsOf.set(relative(dist, join(root, output.entryPoint)), output.exports)
}

/** A module's exports in the core get its path as prefix: `internal/registry.js` + `make` -> `internal_registry$make`. */
const prefixed = (file, name) => `${file.replace(/\.js$/, "").replace(/\W/g, "_")}$${name}`

// 3. The core: one module exporting every core module's exports under prefixed names.
const entry = core.filter((file) => !INLINED.includes(file)).map((file) => {
  const names = exportsOf.get(file) ?? []
  return names.length === 0
    ? `import "./${file}"`
    : `export { ${names.map((name) => `${name} as ${prefixed(file, name)}`).join(", ")} } from "./${file}"`
}).join("\n")
await build({
  ...common,
  stdin: { contents: entry, resolveDir: dist, sourcefile: "core.js" },
  outfile: join(dist, CORE),
  // No keepNames: it wraps ~200 functions in `__name(...)` calls run at load, and may make V8
  // compile them eagerly. The price: the few top-level functions whose names clash across modules
  // (make, spawn, take, describe) are `make2`, `spawn2`... in stack traces; classes keep theirs.
  keepNames: false,
  // tsc's maps are followed back to src/*.ts, which the package ships.
  sourcemap: "linked",
  sourcesContent: false,
  banner: {
    js:
      "// effect-tableflip's core modules (src/Upgrader.ts, src/Fds.ts, ... and their internals), bundled by scripts/build-dist.mjs"
  }
})

// 4. Each core module becomes a re-export of its part of the core.
for (const file of core.filter((file) => !INLINED.includes(file))) {
  const names = exportsOf.get(file) ?? []
  const from = relative(dirname(join(dist, file)), join(dist, CORE))
  const specifier = from.startsWith(".") ? from : `./${from}`
  const source = `src/${file.replace(/\.js$/, ".ts")}`
  const base = file.split("/").at(-1)
  writeFileSync(
    join(dist, file),
    [
      `${STUB_MARK} (${specifier}), where the code of ${source} is.`,
      names.length === 0
        ? `import "${specifier}"`
        : `export { ${names.map((name) => `${prefixed(file, name)} as ${name}`).join(", ")} } from "${specifier}"`,
      `//# sourceMappingURL=${base}.map`,
      ""
    ].join("\n")
  )
  writeFileSync(
    join(dist, `${file}.map`),
    JSON.stringify({
      version: 3,
      file: base,
      sources: [relative(dirname(join(dist, file)), join(root, source))],
      names: [],
      mappings: ""
    })
  )
}

// 5. Each dynamic import's target, bundled over its tsc file: the core's modules come from the
// core (their stubs are inlined as re-exports of it), public modules outside the core (Metrics)
// stay their own files, so every class and metric still has one copy.
for (const target of lazy) {
  const at = dirname(target)
  const relativeTo = (file) => {
    const from = relative(at, file)
    return from.startsWith(".") ? from : `./${from}`
  }
  const result = await build({
    ...common,
    entryPoints: [target],
    outfile: target,
    allowOverwrite: true,
    write: false,
    keepNames: false,
    sourcemap: "linked",
    sourcesContent: false,
    banner: {
      js: `// effect-tableflip: src/${
        relative(dist, target).replace(/\.js$/, ".ts")
      } and what only it imports, loaded when first needed; bundled by scripts/build-dist.mjs`
    },
    plugins: [outside, {
      name: "core",
      setup(build) {
        build.onResolve({ filter: /^\./ }, (args) => {
          const file = join(args.resolveDir, args.path)
          if (file === join(dist, CORE)) return { path: relativeTo(file), external: true }
          const fromDist = relative(dist, file)
          const isPublic = !fromDist.includes("/") && !fromDist.startsWith("..")
          if (isPublic && !core.includes(fromDist)) return { path: relativeTo(file), external: true }
          return undefined
        })
      }
    }]
  })
  for (const output of result.outputFiles) writeFileSync(output.path, output.contents)
}
