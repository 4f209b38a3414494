// Groups `tsc -p tsconfig.effect4.json --pretty false` output per file and per kind.
import { readFileSync } from "node:fs"
const lines = readFileSync(process.argv[2], "utf8").split("\n").filter((l) => / error TS\d+/.test(l))
const perFile = new Map(), perKind = new Map()
const bump = (m, k) => m.set(k, (m.get(k) ?? 0) + 1)
for (const l of lines) {
  const [, file, row, col, code, msg] = l.match(/^(.*?)\((\d+),(\d+)\): error (TS\d+): (.*)$/)
  bump(perFile, file)
  let kind
  let m
  if ((m = msg.match(/Property '(\w+)' does not exist on type 'typeof import\("[^"]*\/dist\/(\w+)"/))) kind = `missing ${m[2]}.${m[1]}`
  else if ((m = msg.match(/Namespace '"[^"]*\/dist\/(\w+)"' has no exported member '(\w+)'/))) kind = `missing type ${m[1]}.${m[2]}`
  else if ((m = msg.match(/Module '"[^"]*\/dist\/(\w+)"' has no exported member '(\w+)'/))) kind = `missing export ${m[1]}.${m[2]}`
  else if (code === "TS2306") kind = `no module ${readFileSync(file, "utf8").split("\n")[row - 1].slice(col - 1).match(/^"([^"]+)"/)?.[1]}`
  else if (code === "TS7006" || code === "TS7031") kind = "cascade: implicit any (callback of a missing API)"
  else if (code === "TS18046") kind = "cascade: value is unknown (from a missing Tag/API)"
  else if (/typeof \w+' is not assignable to parameter of type 'Effect</.test(msg) || /is missing the following properties from type 'Effect</.test(msg)) kind = "class Tag used as Effect (yield* Tag)"
  else kind = `${code} ${msg.replace(/'[^']*'/g, "'…'").slice(0, 90)}`
  bump(perKind, kind)
}
const show = (t, m) => { console.log(`\n${t} (${[...m.values()].reduce((a, b) => a + b, 0)})`); for (const [k, v] of [...m].sort((a, b) => b[1] - a[1])) console.log(String(v).padStart(5), k) }
show("per file", perFile); show("per kind", perKind)
