"""Prove a generated package works before it is handed over.

``probe.py`` runs in a fresh process of the interpreter that ran the notebook, with
the generated sources first on the path and nbprod not importable: it imports the
package, loads every artifact through the package's own loader and replays the
parity record. A failure becomes one error naming the artifact, what could not be
resolved, the cell that defined it and the fix.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from nbprod.analysis.analyzer import Analysis, CellInfo
from nbprod.exceptions import CellError, PackageBroken

PROBE = Path(__file__).with_name("probe.py")
TIMEOUT = 600.0


def interpreter(kernel: str | None) -> str:
    """The Python of the kernel that ran the notebook (nbprod's own for ``python3``)."""
    if kernel in (None, "", "python3"):
        return sys.executable
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        argv = KernelSpecManager().get_kernel_spec(kernel).argv
    except Exception:
        return sys.executable
    return str(argv[0]) if argv and "python" in Path(str(argv[0])).name else sys.executable


# What nearly every generated package imports: a waiting probe imports them ahead.
PRELOAD = ("numpy", "pandas", "pyarrow", "sklearn", "skops.io")


def _probe_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}


class WarmProbe:
    """A probe process started ahead of time (``probe.py --wait``): it imports the
    heavy libraries while the notebook runs, then checks the package it is given.
    Fresh in every way that matters: it has never seen nbprod, the notebook or the
    package. One use; ``close()`` ends it if it was never asked."""

    def __init__(self, python: str) -> None:
        self.process = subprocess.Popen(
            [python, "-I", str(PROBE), "--wait", *PRELOAD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_probe_env(),
            # a group of its own: a cancelled run kills its children's process groups
            # (executors.kill_kernels_of), which must never be the caller's own group
            start_new_session=True,
        )

    def ask(self, source: Path, package: str) -> tuple[str, str]:
        request = json.dumps({"source": str(source), "package": package}) + "\n"
        try:
            return self.process.communicate(request, timeout=TIMEOUT)
        finally:
            self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()


def run_script(
    python: str, script: Path, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -I script args``: a fresh process of the notebook's Python, which cannot
    import nbprod, in a process group of its own (as in WarmProbe); TimeoutExpired after
    ``TIMEOUT``."""
    return subprocess.run(
        [python, "-I", str(script), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=cwd,
        env=_probe_env(),
        start_new_session=True,
    )


def verify_package(
    root: Path, package: str, analysis: Analysis, python: str, warm: WarmProbe | None = None
) -> dict[str, Any]:
    """Run the probe on the package rendered in ``root`` (in ``warm`` when given);
    raise PackageBroken on failure."""
    try:
        if warm is not None:
            stdout, stderr = warm.ask(root / "src", package)
        else:
            done = run_script(python, PROBE, str(root / "src"), package, cwd=root)
            stdout, stderr = done.stdout, done.stderr
    except subprocess.TimeoutExpired as error:
        raise PackageBroken(
            f"the generated package did not load and predict within {TIMEOUT:g} s",
            "look for slow module-level code in the features or inference cells",
        ) from error
    lines = stdout.strip().splitlines()
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        raise PackageBroken(
            f"the generated package could not be checked: {stderr.strip()[-800:]}",
            "please report this with the notebook",
        ) from None
    if not result.get("ok"):
        raise broken(result, package, analysis)
    return result


def broken(result: dict[str, Any], package: str, analysis: Analysis) -> PackageBroken:
    """The probe's failure, told in the notebook's terms."""
    stage = result["stage"]
    error = f"{result['type']}: {result['error']}"
    unresolved = result.get("unresolved") or ""
    name = unresolved.rsplit(".", 1)[-1]
    where = _defined_in(analysis, name) if name else None
    if stage == "artifact":
        artifact = result["artifact"]
        definition = analysis.artifacts.get(artifact)
        made = f" (made in cell {definition.info.number})" if definition else ""
        message = f"the package cannot load its artifact `{artifact}`{made}: {error}"
        if unresolved and unresolved.startswith(f"{package}."):
            message += f"; it refers to `{name}`, which the package does not define"
            hint = (
                f"define `{name}` with `def` or `class` in a features cell"
                if where is None
                else f"`{name}` is defined in {_label(where)}: tag that cell `features` "
                "(functions and classes an artifact refers to must be extracted)"
            )
        elif unresolved:
            hint = (
                f"`{unresolved}` must be importable where the package runs: define it in a "
                "features cell, or import it from an installed library"
            )
        else:
            hint = "store the artifact as scikit-learn, numpy or pandas values"
        return PackageBroken(message, hint)
    if stage == "import":
        message = f"the generated package {package} does not import: {error}"
        if where is not None:
            hint = f"`{name}` comes from {_label(where)}: tag that cell `features`"
        elif unresolved:
            hint = (
                f"`{unresolved}` is not installed where the package runs: import it from an "
                "installed library, or keep it in a module beside the notebook"
            )
        else:
            hint = "please report this with the notebook"
        return PackageBroken(message, hint)
    call = f"call {result.get('call', 0) + 1} ({result.get('source') or 'notebook'})"
    return PackageBroken(
        f"the generated package does not predict what the notebook did on {call}: {error}",
        "make prediction depend only on its inputs and on what training cells produce; "
        "`nbprod check` lists the artifacts",
    )


def unresolved_references(
    analysis: Analysis,
    manifest: dict[str, Any],
    local_modules: set[str],
    lambdas: list[dict[str, str]],
) -> list[CellError]:
    """Functions and classes the saved artifacts refer to that the package would not
    define: a def in an untagged cell, a class the kernel made in ``__main__``, a module
    that is neither installed nor vendored. Read from each artifact's recorded types,
    so nothing is loaded: cheap enough for the end of every run."""
    from nbprod.extract.code import lambda_homes, module_level_names

    package = analysis.package
    defined = module_level_names(analysis, lambda_homes(analysis, lambdas))
    sources = {lam["name"]: lam["source"] for lam in lambdas}
    problems: list[CellError] = []
    for artifact, entry in sorted(manifest.get("artifacts", {}).items()):
        origin = analysis.artifacts.get(artifact)
        for reference in entry.get("trusted", []):
            module, _, name = reference.rpartition(".")
            if module == f"{package}.pipeline" and name in defined:
                continue
            if module.startswith(f"{package}.vendored."):
                if module.removeprefix(f"{package}.vendored.") in local_modules:
                    continue
            elif module != "__main__" and not module.startswith(f"{package}."):
                continue  # an installed library's type: pinned as a dependency
            cell, role = (origin.info.number, origin.role) if origin else (0, None)
            if name in sources:
                problems.append(
                    CellError(
                        f"the artifact `{artifact}` holds `{sources[name]}`, a lambda made "
                        "outside the extracted cells, which the package could not rebuild",
                        "define it with `def` in a features cell and pass that function",
                        cell=cell,
                        role=role,
                        line=origin.line if origin else None,
                        name=artifact,
                    )
                )
                continue
            where = _defined_in(analysis, name)
            hint = f"define `{name}` with `def` or `class` in a features cell"
            if where and where.role is None:
                hint = (
                    f"tag cell {where.number} `features`: functions and classes an artifact "
                    "refers to must be extracted"
                )
            elif where:
                hint = (
                    f"move `{name}` into a features cell, its definition (defaults, decorators, "
                    "bases) reading only imports, parameters and features code"
                )
            problems.append(
                CellError(
                    f"the artifact `{artifact}` refers to `{name}`"
                    + (f", which {_label(where)} defines" if where else "")
                    + ", but the package would not define it, so it could not load the artifact",
                    hint,
                    cell=cell,
                    role=role,
                    line=origin.line if origin else None,
                    name=name,
                )
            )
    return problems


def _defined_in(analysis: Analysis, name: str) -> CellInfo | None:
    return next((info for info in reversed(analysis.cells) if name in info.outputs), None)


def _label(info: CellInfo) -> str:
    return f"cell {info.number} ({info.role or 'untagged'})"
