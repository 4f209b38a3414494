#!/usr/bin/env node
// The package ships its TypeScript sources; the executable runs their build in dist/, which
// `npm install` makes in a clone of the repository (prepare) and the published package carries.
import { existsSync } from "node:fs"

const entry = new URL("../dist/src/bin.js", import.meta.url)
if (!existsSync(entry)) {
  process.stderr.write(`effect-tableflip: ${entry.pathname} is missing; run \`npm run build\` first\n`)
  process.exit(2)
}
await import(entry.href)
