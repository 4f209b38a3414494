// Where this checkout's prebuilt native addon is, for the recipes that copy it beside their output
// (scripts/bundle.mjs, scripts/snapshot.mjs): a bundle or a blob cannot hold a .node file.
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

export const prebuiltAddon = join(
  dirname(fileURLToPath(import.meta.url)),
  "..",
  "prebuilds",
  `${process.platform}-${process.arch}`,
  "tableflip.node"
)
