/**
 * Node's on-disk compile cache across generations (Node 22.10 and later).
 * Node writes the cache when a process exits, so a new generation started by
 * a live one would always find it cold: when this process has a cache (the
 * app called `module.enableCompileCache()`, or `NODE_COMPILE_CACHE` is set),
 * it is flushed before the next generation starts, and its directory is
 * passed on.
 *
 * @internal
 */
// Node's built-ins that only an upgrade needs are taken when it happens (`process.getBuiltinModule`,
// Node 20.16+): every generation would load them before `ready` otherwise.

interface CompileCacheApi {
  readonly getCompileCacheDir?: () => string | undefined
  readonly flushCompileCache?: () => void
}

/** The environment for the next generation, after flushing this one's compile cache if it has one. */
export const handOn = (env: NodeJS.ProcessEnv): NodeJS.ProcessEnv => {
  const api = process.getBuiltinModule("node:module") as unknown as CompileCacheApi
  const dir = api.getCompileCacheDir?.()
  if (dir === undefined || dir === "") return env
  try {
    api.flushCompileCache?.()
  } catch {
    // A cache that cannot be written costs the next generation its warm start, nothing else.
  }
  return env.NODE_COMPILE_CACHE === undefined ? { ...env, NODE_COMPILE_CACHE: dir } : env
}
