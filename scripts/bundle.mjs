#!/usr/bin/env node
// One-file bundle of a compiled app with esbuild, for a faster start of every generation: Node
// resolves and reads one file instead of a few hundred modules.
//
//   node scripts/bundle.mjs <entry.js> <out.mjs>      (npm run bundle: the compiled http-server example)
//
// The native addon cannot be inside a bundle: it is copied beside the output, and the bundle is
// run with EFFECT_TABLEFLIP_ADDON pointing at it (only DirectoryUpgrader, reaping as PID 1 and
// notify from the main pid use it).
import { build } from "esbuild"
import { copyFileSync, existsSync } from "node:fs"
import { dirname, join, resolve } from "node:path"
import { prebuiltAddon } from "./prebuilt.mjs"

const [entry, out] = process.argv.slice(2)
if (entry === undefined || out === undefined) {
  console.error("usage: node scripts/bundle.mjs <entry.js> <out.mjs>")
  process.exit(2)
}
await build({
  entryPoints: [entry],
  outfile: out,
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  // Some dependencies still call require() for Node's own modules.
  banner: {
    js:
      "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);"
  },
  logLevel: "warning"
})
const addon = prebuiltAddon
if (existsSync(addon)) copyFileSync(addon, join(dirname(resolve(out)), "tableflip.node"))
console.log(`bundled ${entry} into ${out}`)
