import { defineConfig } from "vitest/config"

// `npm run test:soak`: the long runs, one at a time, with a report for .ci/run like the main suite's.
const report = process.env.TABLEFLIP_TEST_REPORT

export default defineConfig({
  test: {
    include: ["test/soak/**/*.test.ts"],
    testTimeout: 20 * 60_000,
    hookTimeout: 30_000,
    maxWorkers: 1,
    reporters: report === undefined ? ["default"] : ["default", ["json", { outputFile: report }]]
  }
})
