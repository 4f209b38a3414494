// Not a module on purpose: tsconfig.effect4.json maps Effect-3-only modules here so each such import is one TS2306 error instead of silently resolving to node_modules/effect (3.x).
declare const notAModule: unique symbol
