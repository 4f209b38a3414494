import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Each test drives real processes; a generous ceiling catches a hang without racing a slow machine.
    testTimeout: 60_000,
    hookTimeout: 30_000,
    // Files run in parallel workers; tests inside a file run one after another.
    fileParallelism: true,
    maxWorkers: 2,
    minWorkers: 1
  }
})
