#!/usr/bin/env node
// Builds the native addon (native/tableflip.c) with the node-gyp npm ships, into
// prebuilds/<platform>-<arch>/tableflip.node, where the library looks for it.
//
// The published package carries the Linux x64 build (Node-API is ABI-stable, so one binary serves
// every Node version), made by `npm pack`. Elsewhere (arm64, musl) run this once after install:
//   npx effect-tableflip build-native
// A failed build is reported and exits 1, unless --optional: then it warns and exits 0 (the
// repository's own `npm install` uses that, so a machine without a C compiler still installs).
import { spawnSync } from "node:child_process"
import { copyFileSync, existsSync, mkdirSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const optional = process.argv.includes("--optional")
const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const native = join(root, "native")
// Headers installed beside the running node (Debian's nodejs-dev, the official tarballs) need no download.
const prefix = join(dirname(process.execPath), "..")
const nodedir = process.env.npm_config_nodedir ??
  (existsSync(join(prefix, "include", "node", "node_api.h")) ? prefix : undefined)
const npmGyp = join(dirname(process.execPath), "..", "lib", "node_modules", "npm", "node_modules", "node-gyp", "bin", "node-gyp.js")
const gyp = [process.env.npm_config_node_gyp, npmGyp].find((file) => file !== undefined && existsSync(file))
const command = gyp !== undefined ? [process.execPath, gyp] : ["node-gyp"]
const result = spawnSync(command[0], [...command.slice(1), "rebuild", ...(nodedir ? [`--nodedir=${nodedir}`] : [])], {
  cwd: native,
  stdio: ["ignore", "ignore", "pipe"],
  encoding: "utf8"
})
const built = join(native, "build", "Release", "tableflip.node")
if (result.status === 0 && existsSync(built)) {
  const target = join(root, "prebuilds", `${process.platform}-${process.arch}`)
  mkdirSync(target, { recursive: true })
  copyFileSync(built, join(target, "tableflip.node"))
  console.log(`effect-tableflip: native addon built: ${join(target, "tableflip.node")}`)
} else {
  const why = result.error?.message ??
    result.stderr.split("\n").filter((line) => /error/i.test(line)).slice(0, 5).join("\n")
  const text = `effect-tableflip: native addon not built (needs a C compiler, python3 and make).\n${why}`
  if (!optional) {
    console.error(text)
    process.exit(1)
  }
  console.warn(`${text}\nThe library works without it; DirectoryUpgrader, reaping as PID 1 and notify from the main pid need it.`)
}
