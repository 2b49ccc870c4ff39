"""Prove a generated package works, as an engineer would use it: run as a script.

``python -I probe.py SRC PACKAGE`` in the interpreter that ran the notebook, with
nbprod made unimportable: imports the package from SRC, loads each artifact through
the package's own loader and replays the parity record. Prints one JSON object: the
stage that failed (``import``, ``artifact``, ``parity``) with the artifact or call,
the exception's type, text and the name it could not resolve; or ``{"ok": true}``.
Imports nothing of nbprod: it stands in for a machine without it.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
import traceback
from pathlib import Path
from typing import Any

_MISSING_ATTRIBUTE = re.compile(r"module '([\w.]+)' has no attribute '(\w+)'")
_MISSING_MODULE = re.compile(r"No module named '([\w.]+)'")


def _failure(stage: str, error: BaseException, **where: Any) -> dict[str, Any]:
    text = str(error)
    unresolved = None
    found = _MISSING_ATTRIBUTE.search(text)
    if found:
        unresolved = f"{found.group(1)}.{found.group(2)}"
    elif isinstance(error, ModuleNotFoundError) and error.name:
        unresolved = error.name
    elif (found := _MISSING_MODULE.search(text)) is not None:
        unresolved = found.group(1)
    return {
        "ok": False,
        "stage": stage,
        "type": type(error).__name__,
        "error": text,
        "unresolved": unresolved,
        "traceback": traceback.format_exc(limit=-4),
        **where,
    }


def probe(source: Path, name: str) -> dict[str, Any]:
    sys.modules["nbprod"] = None  # type: ignore[assignment]  # the package must not need it
    sys.path.insert(0, str(source))
    try:
        package = importlib.import_module(name)
    except BaseException as error:
        return _failure("import", error)
    folder = package.artifacts_dir()
    loaded: dict[str, Any] = {}
    for artifact in package.ARTIFACTS:
        try:
            loaded.update(package._artifacts.load_artifacts(folder, [artifact]))
        except BaseException as error:
            return _failure("artifact", error, artifact=artifact)
    for artifact, value in loaded.items():
        setattr(package.pipeline, artifact, value)
    package._loaded_from = folder  # type: ignore[attr-defined]  # a generated module
    values = importlib.import_module(f"{name}._values")
    parity = source.parent / "tests" / "parity"
    calls = json.loads((parity / "parity.json").read_text(encoding="utf-8"))["calls"]
    for number, call in enumerate(calls):
        try:
            args = [values.decode(arg, parity) for arg in call["args"]]
            kwargs = {k: values.decode(v, parity) for k, v in call["kwargs"].items()}
            expected = values.decode(call["result"], parity)
            values.assert_same(package.predict(*args, **kwargs), expected, "prediction")
        except BaseException as error:
            return _failure("parity", error, call=number, source=call.get("source"))
    return {"ok": True, "artifacts": list(loaded), "calls": len(calls)}


def main(argv: list[str]) -> None:
    """``probe.py SRC PACKAGE``, or ``probe.py --wait MODULE...``: import the modules
    (the heavy libraries every package needs) now, then read ``{"source", "package"}``
    from stdin. A run starts the waiting form beside the kernel, so the imports overlap
    with the notebook instead of adding to it."""
    if argv and argv[0] == "--wait":
        for module in argv[1:]:
            try:
                importlib.import_module(module)
            except Exception:  # the package's own import will say what is missing
                continue
        request = json.loads(sys.stdin.readline() or "{}")
        if not request:
            return  # nobody asked: the run failed before it had a package
        source, name = Path(request["source"]), str(request["package"])
    else:
        source, name = Path(argv[0]), argv[1]
    os.environ.pop(f"{name.upper()}_ARTIFACTS", None)  # the package's own artifacts
    print(json.dumps(probe(source, name)))


if __name__ == "__main__":
    main(sys.argv[1:])
