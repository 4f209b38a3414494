/**
 * The services every kind of lifecycle provides, put together in one place:
 * the real one (`Upgrader.layer`), the directory handover
 * (`DirectoryUpgrader.layer`) and the stub (`UpgraderTest.layer`).
 *
 * @internal
 */
import * as Context from "effect/Context"
import * as Fds from "../Fds.js"
import { Upgrader } from "../Upgrader.js"
import type * as Fx from "./fx.js"

/** `Upgrader` and `Fds`, as each layer provides them. @internal */
export const context = (
  upgrader: Fx.ShapeOf<Upgrader>,
  fds: Fx.ShapeOf<Fds.Fds>
): Context.Context<Upgrader | Fds.Fds> => Context.make(Upgrader, upgrader).pipe(Context.add(Fds.Fds, fds))
