import { defineConfig } from "vitest/config"

// .ci/run asks for a JSON report beside the console output, to print one "N passed, N failed" line.
const report = process.env.TABLEFLIP_TEST_REPORT

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    exclude: ["test/soak/**", "**/node_modules/**"],
    // Each test drives real processes; a generous ceiling catches a hang without racing a slow machine.
    testTimeout: 60_000,
    hookTimeout: 30_000,
    // Files run in parallel workers (2 cores here); tests inside a file run one after another. No
    // minWorkers: vitest 5 (the Effect 4 build) has no such option, and vitest 3 defaults it to <= maxWorkers.
    maxWorkers: 2,
    reporters: report === undefined ? ["default"] : ["default", ["json", { outputFile: report }]]
  }
})
