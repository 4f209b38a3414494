// npm's install step: builds the native addon (native/tableflip.c) with the node-gyp npm ships.
// A failed build fails nothing: the library works without it, and the features that need it
// (systemd notify without the systemd-notify tool, reaping orphans as PID 1) say so when used.
import { spawnSync } from "node:child_process"
import { existsSync } from "node:fs"
import { dirname, join } from "node:path"

// Headers installed beside the running node (Debian's nodejs-dev, the official tarballs) need no download.
const prefix = join(dirname(process.execPath), "..")
const nodedir = process.env.npm_config_nodedir ??
  (existsSync(join(prefix, "include", "node", "node_api.h")) ? prefix : undefined)
const gyp = process.env.npm_config_node_gyp
const command = gyp !== undefined && existsSync(gyp) ? [process.execPath, gyp] : ["node-gyp"]
const result = spawnSync(command[0], [...command.slice(1), "rebuild", ...(nodedir ? [`--nodedir=${nodedir}`] : [])], {
  stdio: ["ignore", "ignore", "pipe"],
  encoding: "utf8"
})
if (result.status === 0) {
  console.log("effect-tableflip: native addon built")
} else {
  const why = result.error?.message ?? result.stderr.split("\n").filter((line) => /error/i.test(line)).slice(0, 5).join("\n")
  console.warn(`effect-tableflip: native addon not built; systemd notify falls back to systemd-notify.\n${why}`)
}
