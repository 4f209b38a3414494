#!/usr/bin/env node
// The `effect-tableflip` executable: the compiled CLI in dist/. In a clone of the repository,
// `npm install` (prepare) builds it; the published package carries it.
import { existsSync } from "node:fs"

const entry = new URL("../dist/bin.js", import.meta.url)
if (!existsSync(entry)) {
  process.stderr.write(`effect-tableflip: ${entry.pathname} is missing; run \`npm run build\` first\n`)
  process.exit(2)
}
try {
  await import("effect/Effect")
} catch {
  process.stderr.write(
    "effect-tableflip needs the package `effect` (version 3): npm install effect@3\n"
  )
  process.exit(2)
}
await import(entry.href)
