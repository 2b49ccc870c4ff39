"""Runs inside the notebook's kernel while nbprod executes it.

nbprod adds a few hidden cells around the user's cells; they call this recorder to
(1) record what the inference entry point was given and returned (the parity
record), (2) snapshot the values each ``test`` cell reads, and (3) at the end save
the artifacts and metrics. It only reads the user's namespace; the user's own cells
run unchanged. Every input the entry point is given also widens the input schema
(``schema.observe``), saved beside the parity record. ``values``, ``artifacts`` and
``schema`` are the sibling runtime modules, passed in because this file is executed
from source, not imported.
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import numbers
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

MAX_CALLS = 3
VENDORED = "vendored"  # the subpackage of a generated package that holds local modules


class Recorder:
    def __init__(
        self,
        run_dir: str,
        package_module: str,
        values: ModuleType | None,
        artifacts: ModuleType | None,
        schema: ModuleType | None,
    ) -> None:
        """``values``, ``artifacts`` and ``schema`` are None in a run that records metrics
        only (``finish_metrics``): a notebook that cannot become a package."""
        self.run_dir = Path(run_dir)
        self.package_module = package_module
        self.values: Any = values
        self.artifacts: Any = artifacts
        self.schema_module: Any = schema
        self.schema: dict[str, Any] | None = None
        self.calls: list[dict[str, Any]] = []
        self.pending_inputs: dict[str, Any] | None = None
        self.notes: list[str] = []
        self.wrappers: list[Any] = []  # entry points already wrapped (a cell may run twice)
        self.metrics: dict[str, float] = {}
        # nbprod.log_metric() finds the recorder of the running notebook here.
        globals()["ACTIVE"] = self

    # -- parity: an entry point the notebook defines -----------------------------------
    def wrap(self, namespace: dict[str, Any], name: str) -> None:
        function = namespace.get(name)
        if not callable(function) or function in self.wrappers:
            return
        recorder = self

        @functools.wraps(function)
        def recorded(*args: Any, **kwargs: Any) -> Any:
            recorder.observe_input([*args, *kwargs.values()])
            if len(recorder.calls) >= MAX_CALLS:
                return function(*args, **kwargs)
            inputs = copy.deepcopy((args, kwargs))
            result = function(*args, **kwargs)
            recorder.calls.append(
                {
                    "args": list(inputs[0]),
                    "kwargs": inputs[1],
                    "result": copy.deepcopy(result),
                    "source": "notebook",
                }
            )
            return result

        self.wrappers.append(recorded)
        namespace[name] = recorded

    # -- parity: an entry point synthesized from plain statements --------------------------
    def before_inference(self, namespace: dict[str, Any], params: list[str]) -> None:
        self.pending_inputs = {p: copy.deepcopy(namespace[p]) for p in params if p in namespace}
        self.observe_input(list(self.pending_inputs.values()))

    def observe_input(self, arguments: list[Any]) -> None:
        """Widen the input schema by the first argument of one inference call."""
        if not arguments:
            return
        try:
            self.schema = self.schema_module.observe(self.schema, arguments[0])
        except Exception as error:  # the schema must never break the user's notebook
            self.notes.append(f"input schema not recorded: {error!r}")

    def after_inference(self, namespace: dict[str, Any], returns: str | None) -> None:
        if self.pending_inputs is None:
            return
        # the assignment target (e.g. `y_pred`), else the value IPython displayed last
        result = namespace.get("_") if returns is None else eval(returns, namespace)
        self.calls.append(
            {
                "args": list(self.pending_inputs.values()),
                "kwargs": {},
                "result": copy.deepcopy(result),
                "source": "notebook",
            }
        )
        self.pending_inputs = None

    # -- tests ---------------------------------------------------------------------------
    def before_test(self, namespace: dict[str, Any], cell: int, names: list[str]) -> None:
        folder = self.run_dir / "fixtures" / f"cell_{cell}"
        stored: dict[str, Any] = {}
        for name in names:
            if name not in namespace:
                continue
            try:
                stored[name] = self.values.encode(namespace[name], folder, name)
            except (TypeError, ValueError) as error:
                self.notes.append(f"test cell {cell}: `{name}` cannot be stored ({error})")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "fixtures.json").write_text(json.dumps(stored, indent=1))

    # -- metrics --------------------------------------------------------------------------
    def log_metric(self, name: str, value: Any) -> None:
        try:
            self.metrics[str(name)] = float(value)
        except (TypeError, ValueError):
            self.notes.append(f"log_metric({name!r}, ...) ignored a value that is not a number")

    # -- the end of the run ------------------------------------------------------------------
    def finish_metrics(self, namespace: dict[str, Any], metrics: list[str]) -> None:
        """The end of a run that cannot become a package: its metrics and notes only."""
        self._collect_metrics(namespace, metrics)
        self._write_json("notes.json", self.notes)

    def _collect_metrics(self, namespace: dict[str, Any], metrics: list[str]) -> None:
        for name in metrics:
            value = namespace.get(name)
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                self.metrics.setdefault(name, float(value))
        self._write_json("metrics.json", self.metrics)

    def finish(
        self,
        namespace: dict[str, Any],
        entry: str,
        kind: str,
        artifacts: dict[str, list[int]],
        metrics: list[str],
        samples: list[str],
    ) -> None:
        """Record metrics, parity, data fingerprints and notes, and save the artifacts;
        ``artifacts`` maps each name to the ``[cell, line]`` that defined it."""
        self._collect_metrics(namespace, metrics)
        if kind == "function" and not self.calls:
            self._sample_call(namespace, entry, samples)
        self._save_parity(entry)
        self._write_json("data.json", self._fingerprints(namespace, samples))
        self._relocate_notebook_classes(namespace)
        self._name_lambdas([namespace[name] for name in artifacts if name in namespace])
        missing = [name for name in artifacts if name not in namespace]
        if missing:
            raise NameError(
                f"artifact(s) {', '.join(missing)} were not defined when the notebook finished "
                "(deleted, or defined only in a branch that did not run)"
            )
        # a value no format can store raises UnsupportedArtifact naming it and its cell
        self.artifacts.save_artifacts(
            {name: namespace[name] for name in artifacts}, self.run_dir / "artifacts", artifacts
        )
        self._write_json("notes.json", self.notes)

    def record_environment(self, modules: list[str]) -> None:
        """Versions of the distributions behind the notebook's imports, as trained."""
        import importlib.metadata as metadata
        import platform

        packages: dict[str, str] = {}
        for module in [*modules, "skops", "numpy", "pandas", "pyarrow"]:
            for distribution in self.artifacts.distributions(module):
                try:
                    packages[distribution] = metadata.version(distribution)
                except metadata.PackageNotFoundError:
                    continue
        self._write_json(
            "environment.json",
            {"python": platform.python_version(), "modules": modules, "packages": packages},
        )

    def _sample_call(self, namespace: dict[str, Any], entry: str, samples: list[str]) -> None:
        function = namespace.get(entry)
        if function is None:
            return
        try:
            signature = inspect.signature(function)
            required = [
                p
                for p in signature.parameters.values()
                if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
        except (TypeError, ValueError):
            required = []
        if len(required) != 1:
            self.notes.append(f"`{entry}` was never called and does not take one argument")
            return
        for name in samples:
            value = namespace.get(name)
            head = getattr(value, "head", None)
            if head is None:
                continue
            try:
                sample = head(5)
                function(sample)  # the wrapper records the call
                if self.calls:
                    self.calls[-1]["source"] = f"sample of {name}"
                    return
            except Exception as error:
                self.notes.append(f"`{entry}({name}.head(5))` raised {error!r}")
        self.notes.append(f"`{entry}` was never called; add an example call in the notebook")

    def _save_parity(self, entry: str) -> None:
        folder = self.run_dir / "parity"
        records = []
        for i, call in enumerate(self.calls):
            try:
                records.append(
                    {
                        "args": [
                            self.values.encode(a, folder, f"call{i}_arg{j}")
                            for j, a in enumerate(call["args"])
                        ],
                        "kwargs": {
                            k: self.values.encode(v, folder, f"call{i}_kw_{k}")
                            for k, v in call["kwargs"].items()
                        },
                        "result": self.values.encode(call["result"], folder, f"call{i}_result"),
                        "source": call["source"],
                    }
                )
            except (TypeError, ValueError) as error:
                self.notes.append(f"call {i} of `{entry}` cannot be stored: {error}")
                self.notes.append(traceback.format_exc(limit=2))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "parity.json").write_text(
            json.dumps({"entry": entry, "calls": records}, indent=1)
        )
        (folder / "schema.json").write_text(json.dumps(self.schema, indent=1))

    def _fingerprints(self, namespace: dict[str, Any], names: list[str]) -> dict[str, Any]:
        """Shape and content hash of each table or array the data cells produced."""
        import hashlib

        import numpy as np
        import pandas as pd

        found: dict[str, Any] = {}
        for name in dict.fromkeys(names):
            value = namespace.get(name)
            try:
                if isinstance(value, pd.DataFrame | pd.Series):
                    hashed = pd.util.hash_pandas_object(value, index=True).to_numpy()
                    columns = list(map(str, value.columns)) if value.ndim == 2 else None
                elif isinstance(value, np.ndarray) and not value.dtype.hasobject:
                    hashed, columns = np.ascontiguousarray(value), None
                else:
                    continue
            except (TypeError, ValueError) as error:
                self.notes.append(f"`{name}` could not be fingerprinted: {error}")
                continue
            found[name] = {
                "type": type(value).__name__,
                "shape": list(value.shape),
                "columns": columns,
                "sha256": hashlib.sha256(hashed.tobytes()).hexdigest(),
            }
        return found

    def record_local_modules(self) -> None:
        """The modules the kernel loaded from files that no installed distribution
        provides (a ``helpers.py`` beside the notebook, a ``src/`` package on a path the
        notebook added): the package vendors them, never depends on them by name. Their
        functions and classes are re-pointed to where the package keeps them, so an
        artifact that refers to one finds it there."""
        import sys

        # the notebook's folder: Jupyter runs it there
        local = local_modules(Path.cwd().resolve(), self.artifacts.distributions)
        package = self.package_module.rsplit(".", 1)[0]
        for name in local:
            module = sys.modules[name]
            for value in list(vars(module).values()):
                if (inspect.isclass(value) or inspect.isfunction(value)) and getattr(
                    value, "__module__", None
                ) == name:
                    try:
                        value.__module__ = f"{package}.{VENDORED}.{name}"
                    except (AttributeError, TypeError):
                        continue
        self._write_json("local_modules.json", local)

    def _name_lambdas(self, values: list[Any]) -> None:
        """A lambda inside an artifact (``FunctionTransformer(lambda X: ...)``) has no
        name a package can import it by. Give each one made in a cell a module-level
        name in ``<package>.pipeline``; extraction writes its source there under that
        name. A closure over local variables keeps no name: saving it is refused."""
        import ast
        import linecache

        named: list[dict[str, Any]] = []
        for function in _functions_in(values):
            code = function.__code__
            if function.__name__ != "<lambda>" or function.__module__ != "__main__":
                continue
            if code.co_freevars:
                continue
            source = _lambda_source(ast, linecache.getlines(code.co_filename), code)
            if source is None:
                continue
            name = f"_lambda_{len(named) + 1}"
            function.__name__ = function.__qualname__ = name
            function.__module__ = self.package_module
            named.append({"name": name, "source": source})
        self._write_json("lambdas.json", named)

    def _relocate_notebook_classes(self, namespace: dict[str, Any]) -> None:
        """Classes and functions defined in cells live in ``<package>.pipeline`` once
        extracted; skops records an object's module, so point it there before saving."""
        for value in list(namespace.values()):
            if (inspect.isclass(value) or inspect.isfunction(value)) and getattr(
                value, "__module__", None
            ) == "__main__":
                try:
                    value.__module__ = self.package_module
                except (AttributeError, TypeError):
                    continue

    def _write_json(self, name: str, data: Any) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / name).write_text(json.dumps(data, indent=1))


# Files of loaded modules found under the interpreter's own folders (the standard
# library, site-packages): a fork server fills it once, so each kernel it forks only
# looks at what the notebook imported since.
_SYSTEM_FILES: set[str] = set()


def local_modules(here: Path, distributions: Any) -> dict[str, str]:
    """{module name: file} of the loaded modules that are the notebook's own code: not
    the standard library, not under the interpreter's folders, and not provided by an
    installed distribution (an editable install outside ``here`` is one)."""
    import sys
    import sysconfig

    system = {Path(p).resolve() for p in sysconfig.get_paths().values() if p}
    system |= {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()}
    local: dict[str, str] = {}
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        top = name.split(".")[0]
        if not isinstance(file, str) or not file.endswith(".py") or name == "__main__":
            continue
        if file in _SYSTEM_FILES or top.startswith("_nbprod") or top in sys.stdlib_module_names:
            continue
        path = Path(file).resolve()
        if any(path.is_relative_to(root) for root in system):
            _SYSTEM_FILES.add(file)
            continue
        if not path.is_file():
            continue
        if distributions(top) and not path.is_relative_to(here):
            continue
        local[name] = str(path)
    return local


def warm(distributions: Any) -> None:
    """What every run would look up again, looked up once by a fork server before it
    forks kernels: the installed distributions and the files of the modules it loaded."""
    distributions("numpy")
    local_modules(Path.cwd().resolve(), distributions)


def _functions_in(values: list[Any], limit: int = 100_000) -> list[Any]:
    """Python functions reachable from ``values`` through containers, attributes and
    ``functools.partial`` (bounded: a fitted model is a tree of small objects)."""
    found: list[Any] = []
    seen: set[int] = set()
    pending = list(values)
    while pending and len(seen) < limit:
        value = pending.pop()
        if id(value) in seen or isinstance(value, str | bytes | int | float | type(None)):
            continue
        seen.add(id(value))
        if inspect.isfunction(value):
            found.append(value)
        elif isinstance(value, dict):
            pending += [*value.keys(), *value.values()]
        elif isinstance(value, list | tuple | set | frozenset):
            pending += list(value)
        elif isinstance(value, functools.partial):
            pending += [value.func, *value.args, *value.keywords.values()]
        elif not inspect.ismodule(value) and not inspect.isclass(value):
            state = getattr(value, "__dict__", None)
            if isinstance(state, dict):
                pending += list(state.values())
    return found


def _lambda_source(ast: Any, lines: list[str], code: Any) -> str | None:
    """The source of the lambda compiled to ``code``, from the cell it was made in."""
    try:
        tree = ast.parse("".join(lines))
    except (SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        if not isinstance(node, ast.Lambda) or node.lineno != code.co_firstlineno:
            continue
        source = ast.unparse(node)
        compiled = compile(source, "<lambda>", "eval")
        inner = next((c for c in compiled.co_consts if hasattr(c, "co_code")), None)
        if inner is not None and (inner.co_code, inner.co_names) == (code.co_code, code.co_names):
            return str(source)
    return None
