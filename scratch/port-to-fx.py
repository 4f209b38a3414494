# One-off: rewrites the core's Effect-3-only API uses to the Fx names (issue 18 spike).
import re, sys, os
subs = [
  (r"\bEffect\.zipRight\b", "Effect.andThen"),
  (r"\bEffect\.async\b", "Fx.callback"),
  (r"\bDeferred\.unsafeDone\b", "Fx.doneUnsafe"),
  (r"\bDeferred\.unsafeMake(<[^>]*>)?\(FiberId\.none\)", r"Fx.makeDeferredUnsafe\1()"),
  (r"\bQueue\.unsafeOffer\b", "Fx.offerUnsafe"),
  (r"\bEffect\.catchAll\(", "Fx.catchAll("),
  (r"\bEffect\.forkDaemon\b", "Fx.forkDetach"),
  (r"\bEffect\.timeoutFail\(", "Fx.timeoutFail("),
  (r"\bScope\.extend\(", "Fx.inScope("),
  (r"\bExit\.isInterrupted\b", "Fx.isInterrupted"),
  (r"\bDuration\.decode\b", "Fx.decodeDuration"),
  (r"\bDuration\.DurationInput\b", "Fx.DurationInput"),
  (r"\bEffect\.makeSemaphore\b", "Fx.makeSemaphore"),
  (r"\bEffect\.Semaphore\b", "Fx.Semaphore"),
  (r"\bFiber\.RuntimeFiber\b", "Fx.RunningFiber"),
  (r"\bOption\.fromNullable\b", "Fx.fromNullable"),
  (r"\bEither\.Either<", "Fx.Result<"),
  (r"\bEither\.right\b", "Fx.succeed"),
  (r"\bEither\.left\b", "Fx.fail"),
  (r"\bEither\.isRight\b", "Fx.isSuccess"),
  (r"\bEither\.isLeft\b", "Fx.isFailure"),
  (r"\bEither\.map\(", "Fx.mapResult("),
  (r"\bEither\.match\(", "Fx.matchResult("),
]
for path in sys.argv[1:]:
  s = open(path).read()
  o = s
  for a, b in subs: s = re.sub(a, b, s)
  if s == o: continue
  if "Fx.matchResult(" in s:
    s = s.replace("onLeft:", "onFailure:").replace("onRight:", "onSuccess:")
  rel = os.path.relpath("src/internal/fx.js", os.path.dirname(path))
  if not rel.startswith("."): rel = "./" + rel
  imp = f'import * as Fx from "{rel}"\n'
  for mod in ["Either", "FiberId"]:
    if not re.search(rf"\b{mod}\.", s.split("\n", 0)[0].split("import", 1)[0] + re.sub(rf'^import .*"effect/{mod}"\n', "", s, flags=re.M)):
      s = re.sub(rf'^import (type )?\* as {mod} from "effect/{mod}"\n', "", s, flags=re.M)
  # put the Fx import after the last import line
  lines = s.split("\n")
  if "Fx." in s and "import * as Fx from" not in s:
    imports = [i for i, l in enumerate(lines) if l.startswith("import ") or l.startswith("} from ")]
    at = imports[-1] + 1 if imports else lines.index(" */") + 1
    lines.insert(at, imp.rstrip("\n"))
  open(path, "w").write("\n".join(lines))
  print("ported", path)
