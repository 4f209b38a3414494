#!/usr/bin/env node
// The Effect 4 build (issue 18): materialises build/effect4/, a copy of the repository in which every
// `X.effect4.ext` stands in for `X.ext`, with a package.json for Effect 4 and its own node_modules.
// Everything of the Effect 4 build (tsc, eslint, vitest, the packed-tarball test) then runs inside that
// tree with plain `node`: no `paths` map, no alias, so the tree is exactly what `npm publish` sees there.
//
//   node scripts/effect4.mjs            make or update the tree (only changed files are written)
//   node scripts/effect4.mjs --install  ... and `npm ci` there when its package.json or lock changed
//   node scripts/effect4.mjs --check    ... --install, then tsc in the tree (npm run check:effect4)
//   node scripts/effect4.mjs --test     ... --install, then `npm test` in the tree (npm run test:effect4)
//   node scripts/effect4.mjs --soak     ... --install, then `npm run test:soak` there (test:soak:effect4)
//   node scripts/effect4.mjs --lock     regenerate effect4/package-lock.json from a real npm install
//
// Re-running never deletes the tree's node_modules, dist or addon build, so an update is a copy of
// the changed files; `npm ci` runs again only when the hash of package.json + lock changes.
import { spawnSync } from "node:child_process"
import { createHash } from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"

const root = Path.resolve(import.meta.dirname, "..")
const tree = Path.join(root, "build", "effect4")
const lockFile = Path.join(root, "effect4", "package-lock.json")
const manifestFile = Path.join(tree, ".effect4-files.json")
const hashFile = Path.join(tree, "node_modules", ".effect4-install-hash")
const mode = process.argv[2] ?? "--tree"
// After the root's `npm test` (posttest): say what it did not run. Silent inside the tree, which has no lock here.
if (mode === "--remind") {
  if (Fs.existsSync(lockFile)) {
    console.log(
      "npm test ran the Effect 3 build's suite. The Effect 4 build's: npm run test:effect4 (Node >= 22.19;" +
        " .ci/run runs both, Effect 3 on Node 20 and 24, Effect 4 on Node 22 and 24)."
    )
  }
  process.exit(0)
}
const modes = ["--tree", "--install", "--check", "--test", "--soak", "--lock"]
if (!modes.includes(mode)) {
  console.error(`effect4.mjs: unknown mode ${mode}; one of ${modes.join(", ")}`)
  process.exit(2)
}

/** What the tree holds: these directories whole, docs' guides, and the root files below. */
const dirs = ["src", "test", "examples", "bench", "scripts", "native", "bin"]
const rootFiles = /^(README\.md|LICENSE|docgen\.json|eslint\.config\.mjs|tsconfig[\w.]*\.json|vitest[\w.]*\.ts)$/
// tsconfig.effect4.json is the root's way into the tree (it extends build/effect4/tsconfig.json); copied,
// the swap would make it the tree's own tsconfig.json, which would then extend itself.
// This script stays out too: the tree's package.json has no effect4 scripts (no tree inside the tree).
const notCopied = new Set(["tsconfig.effect4.json", Path.join("scripts", "effect4.mjs")])
/** Generated or machine-local, in the source and in the tree alike: never copied, never deleted. */
const skipped = /(^|\/)(node_modules|native\/build|bench\/tmp|bench\/results)(\/|$)|\.tsbuildinfo$/

/** Effect 4 versions (decision 3 of the plan); vitest 5 is what @effect/vitest 4 asks for. */
const effect4 = {
  effect: "4.1.0",
  "@effect/platform-node": "4.1.0",
  "@effect/vitest": "4.0.5",
  vitest: "~5.1.2",
  // vitest 5 wants @types/node ^22 || >=24; the build's floor is Node 22.19.
  "@types/node": "^22.19.0"
}
const dropped = ["@effect/platform", "@effect/docgen"]

/**
 * The tree sits inside the repository, so Node and TypeScript, not finding a package in the tree's
 * node_modules, walk up to the root's, where `@effect/platform` is the Effect 3 one: an import of it would
 * silently load Effect 3 code. A stub with no exports in the tree's node_modules stops that walk (the
 * import fails with ERR_PACKAGE_PATH_NOT_EXPORTED / TS2306). npm ci empties node_modules, so every run
 * of this script puts them back.
 */
const block = () => {
  const modules = Path.join(tree, "node_modules")
  if (!Fs.existsSync(modules)) return
  const root = rootManifest()
  const own = JSON.parse(Fs.readFileSync(Path.join(tree, "package.json"), "utf8"))
  const ours = new Set(Object.keys({ ...own.dependencies, ...own.devDependencies, ...own.peerDependencies }))
  for (const name of Object.keys({ ...root.dependencies, ...root.devDependencies, ...root.peerDependencies })) {
    const dir = Path.join(modules, name)
    if (ours.has(name) || (Fs.existsSync(dir) && !Fs.existsSync(Path.join(dir, ".effect4-blocked")))) continue
    Fs.mkdirSync(dir, { recursive: true })
    Fs.writeFileSync(Path.join(dir, ".effect4-blocked"), "")
    // TypeScript, unlike Node, walks on past a package whose exports do not match; a types-only target
    // that is not a module stops it with TS2306 instead.
    const exports = { types: "./blocked.d.ts" }
    writeIfChanged(
      Path.join(dir, "package.json"),
      JSON.stringify({ name, version: "0.0.0", exports: { ".": exports, "./*": exports } }) + "\n"
    )
    writeIfChanged(Path.join(dir, "blocked.d.ts"), `// ${name} is not part of the Effect 4 build.\n`)
  }
}

const swapped = (name) => name.replace(/\.effect4(\.[^.]+)$/, "$1")

/** Source path -> tree path (relative), after the `X.effect4.ext` -> `X.ext` swap. */
const sources = () => {
  const files = new Map()
  const add = (rel) => {
    if (skipped.test(rel) || notCopied.has(rel)) return
    const target = Path.join(Path.dirname(rel), swapped(Path.basename(rel)))
    // The Effect 4 sibling wins whichever order the directory lists them in.
    if (files.has(target) && !Path.basename(rel).includes(".effect4.")) return
    files.set(target, rel)
  }
  const walk = (rel) => {
    for (const entry of Fs.readdirSync(Path.join(root, rel), { withFileTypes: true })) {
      const child = Path.join(rel, entry.name)
      if (skipped.test(child)) continue
      if (entry.isDirectory()) walk(child)
      else if (entry.isFile()) add(child)
    }
  }
  for (const dir of dirs) if (Fs.existsSync(Path.join(root, dir))) walk(dir)
  for (const file of Fs.readdirSync(Path.join(root, "docs"))) if (file.endsWith(".md")) add(Path.join("docs", file))
  for (const file of Fs.readdirSync(root)) if (rootFiles.test(file)) add(file)
  return files
}

const rootManifest = () => JSON.parse(Fs.readFileSync(Path.join(root, "package.json"), "utf8"))

/**
 * The root's package.json with Effect 4 dependencies, peer range, engines and the next major. The Effect 3
 * build has the odd majors and the Effect 4 build the even one above it (1.x and 2.x, then 3.x and 4.x): a
 * breaking change moves both by two, so no semver range of one build ever matches a version of the other.
 */
const packageJson = () => {
  const pkg = rootManifest()
  const [major, ...rest] = pkg.version.split(".")
  if (Number(major) % 2 !== 1) {
    throw new Error(`the root (Effect 3) version ${pkg.version} must have an odd major: see docs/effect4.md, Publishing`)
  }
  pkg.version = [Number(major) + 1, ...rest].join(".")
  pkg.engines = { ...pkg.engines, node: ">=22.19" }
  // The root's reminder that `npm test` skipped this build: the tree is that build (and has no effect4.mjs).
  delete pkg.scripts.posttest
  for (const name of dropped) {
    delete pkg.devDependencies[name]
    delete pkg.peerDependencies[name]
    delete pkg.peerDependenciesMeta?.[name]
    delete pkg.overrides?.[name]
  }
  Object.assign(pkg.devDependencies, effect4)
  pkg.peerDependencies = { ...pkg.peerDependencies, effect: "^4.1.0", "@effect/platform-node": "^4.1.0" }
  // The API reference is generated from the Effect 3 build (docgen has no Effect 4 release).
  delete pkg.scripts.docgen
  for (const name of Object.keys(pkg.scripts)) if (name.includes("effect4")) delete pkg.scripts[name]
  return JSON.stringify(pkg, null, 2) + "\n"
}

const writeIfChanged = (file, content) => {
  if (Fs.existsSync(file) && Fs.readFileSync(file).equals(Buffer.from(content))) return false
  Fs.mkdirSync(Path.dirname(file), { recursive: true })
  Fs.writeFileSync(file, content)
  return true
}

const materialise = () => {
  const started = Date.now()
  const files = sources()
  // target -> source of the last run: a target whose source changed (a sibling added or removed) is
  // copied again even if size and mtime happen to match.
  const previous = Fs.existsSync(manifestFile) ? JSON.parse(Fs.readFileSync(manifestFile, "utf8")) : {}
  let written = 0, removed = 0
  for (const [target, source] of files) {
    const from = Path.join(root, source), to = Path.join(tree, target)
    const stat = Fs.statSync(from)
    // Same size and not newer: unchanged (the copy keeps the source's mtime), so no read at all.
    if (Fs.existsSync(to) && previous[target] === source) {
      const old = Fs.statSync(to)
      if (old.size === stat.size && Math.abs(old.mtimeMs - stat.mtimeMs) < 1) continue
    }
    Fs.mkdirSync(Path.dirname(to), { recursive: true })
    Fs.copyFileSync(from, to)
    Fs.chmodSync(to, stat.mode)
    Fs.utimesSync(to, stat.atime, stat.mtime)
    written++
  }
  // Files this script wrote before whose source is gone (renamed, deleted, or now swapped).
  for (const target of Object.keys(previous)) {
    if (!files.has(target) && Fs.existsSync(Path.join(tree, target))) {
      Fs.rmSync(Path.join(tree, target))
      removed++
    }
  }
  if (writeIfChanged(Path.join(tree, "package.json"), packageJson())) written++
  if (Fs.existsSync(lockFile)) {
    const lock = JSON.parse(Fs.readFileSync(lockFile, "utf8"))
    // The lock records the package's own version; keep it in step with the root's without a re-lock.
    const version = JSON.parse(Fs.readFileSync(Path.join(tree, "package.json"), "utf8")).version
    lock.version = version
    lock.packages[""].version = version
    if (writeIfChanged(Path.join(tree, "package-lock.json"), JSON.stringify(lock, null, 2) + "\n")) written++
  }
  Fs.writeFileSync(manifestFile, JSON.stringify(Object.fromEntries([...files].sort()), null, 1) + "\n")
  block()
  console.log(
    `effect4: ${Path.relative(root, tree)} up to date (${files.size} files, ${written} written, ${removed} removed, ${
      Date.now() - started
    } ms)`
  )
}

const run = (command, args, options = {}) => {
  console.log(`effect4: ${command} ${args.join(" ")}  (in ${Path.relative(root, options.cwd ?? tree) || "."})`)
  const result = spawnSync(command, args, { cwd: tree, stdio: "inherit", ...options })
  if (result.error) throw result.error
  return result.status ?? 1
}

const installHash = () =>
  createHash("sha256")
    .update(Fs.readFileSync(Path.join(tree, "package.json")))
    .update(Fs.readFileSync(Path.join(tree, "package-lock.json")))
    .digest("hex")

/**
 * `npm ci` in the tree when its package.json or lock changed (the addon is Node-API: one build serves
 * every Node). Dependencies install with
 * --ignore-scripts so that the tree's own `prepare` (the build) does not turn a type error of the port
 * into an install failure; the addon is built here, dist by `npm test`'s build.
 */
const install = () => {
  if (!Fs.existsSync(Path.join(tree, "package-lock.json"))) {
    console.error("effect4: no effect4/package-lock.json; run `node scripts/effect4.mjs --lock` first")
    process.exit(1)
  }
  const hash = installHash()
  if (Fs.existsSync(hashFile) && Fs.readFileSync(hashFile, "utf8") === hash) return
  const started = Date.now()
  if (run("npm", ["ci", "--ignore-scripts", "--no-audit", "--no-fund"]) !== 0) process.exit(1)
  if (run("npm", ["run", "build:native", "--", "--optional"]) !== 0) process.exit(1)
  Fs.writeFileSync(hashFile, hash)
  block()
  console.log(`effect4: installed in ${Math.round((Date.now() - started) / 1000)} s`)
}

const nodeOk = () => {
  const [major, minor] = process.versions.node.split(".").map(Number)
  return major > 22 || (major === 22 && minor >= 19)
}

materialise()
if (mode === "--lock") {
  // A real install (not --package-lock-only), so the lock is the one npm ci will reproduce.
  Fs.rmSync(Path.join(tree, "package-lock.json"), { force: true })
  if (run("npm", ["install", "--ignore-scripts", "--no-audit", "--no-fund"]) !== 0) process.exit(1)
  Fs.mkdirSync(Path.dirname(lockFile), { recursive: true })
  Fs.copyFileSync(Path.join(tree, "package-lock.json"), lockFile)
  Fs.writeFileSync(hashFile, installHash())
  block()
  if (run("npm", ["run", "build:native", "--", "--optional"]) !== 0) process.exit(1)
  console.log(`effect4: wrote ${Path.relative(root, lockFile)}`)
} else if (mode === "--install" || mode === "--check") {
  install()
  if (mode === "--check") {
    // The examples and probes import the package by name, so its dist must be built first (as `npm test` does).
    const built = run("npm", ["run", "build", "--silent"])
    process.exit(built !== 0 ? built : run(process.execPath, [Path.join(tree, "node_modules/typescript/bin/tsc"), "-b", "tsconfig.json"]))
  }
} else if (mode === "--test" || mode === "--soak") {
  if (!nodeOk()) {
    console.log(
      `SKIPPED: the Effect 4 suite needs Node >= 22.19 (CI runs it on Node 22 and 24); this is Node ${process.version}`
    )
    process.exit(0)
  }
  install()
  process.exit(run("npm", mode === "--test" ? ["test"] : ["run", "test:soak"]))
}
