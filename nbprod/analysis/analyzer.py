"""Static analysis of a tagged notebook: what each role reads and defines, which
training outputs prediction needs (the artifacts), the inference entry point, and
every problem that would stop extraction. No code is run.

The result is plain data (``Analysis.to_json()``) shared by the CLI, the server,
the Lab extension and the widgets; the extraction stage reads the richer
``Analysis`` object itself.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbprod.analysis.facts import CellInfo, Definition, EntryPoint, Parameter, Problem, Severity
from nbprod.analysis.naming import is_taken, package_name
from nbprod.analysis.parsing import parse_cell
from nbprod.analysis.prediction import PredictionRules
from nbprod.analysis.scopes import BUILTINS, Import, scan_statements
from nbprod.notebook import Cell, Notebook, declared_kernel
from nbprod.roles import ROLES, TRAINING_ROLES

__all__ = ["Analysis", "CellInfo", "Definition", "EntryPoint", "Parameter", "Problem", "analyze"]


@dataclass
class Analysis:
    notebook: Notebook
    cells: list[CellInfo]
    imports: dict[str, Import]
    parameters: dict[str, Parameter]
    artifacts: dict[str, Definition]
    entry: EntryPoint | None
    problems: list[Problem]
    prediction_code: list[Definition]  # features/inference defs and constants prediction uses
    module_code: list[Definition]  # every features/inference def and constant (module level)
    role_imports: dict[str, list[str]]
    pip_hints: list[str]
    metric_names: list[str]
    test_fixtures: dict[int, list[str]]  # test cell → training values it reads (recorded)
    training_excluded: list[int]  # metrics cells train() cannot reproduce
    star_imports: list[Import]
    package: str  # the generated package's name (see naming.package_name)
    run_files: dict[str, Path]  # `%run helper.py` → {"helper": path}: vendored as modules

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def role_cells(self, *roles: str) -> list[CellInfo]:
        return [c for c in self.cells if c.role in roles]

    def to_json(self) -> dict[str, Any]:
        roles: dict[str, Any] = {}
        for role in ROLES:
            infos = self.role_cells(role)
            if not infos:
                continue
            inputs, outputs = _sequence_io(infos)
            roles[role] = {
                "cells": [c.number for c in infos],
                "inputs": sorted(inputs - BUILTINS),
                "outputs": sorted(outputs),
                "imports": self.role_imports.get(role, []),
            }
        entry = None
        if self.entry is not None:
            entry = {
                "name": self.entry.name,
                "kind": self.entry.kind,
                "signature": self.entry.signature,
                "params": self.entry.params,
                "cell": self.entry.cell,
                "returns": self.entry.returns,
            }
        return {
            "notebook": str(self.notebook.path),
            "package": self.package,
            "ok": self.ok,
            "roles": roles,
            "cells": [
                {
                    "cell": c.number,
                    "role": c.role,
                    "inputs": sorted(set(c.inputs) - BUILTINS),
                    "outputs": sorted(c.outputs),
                }
                for c in self.cells
            ],
            "parameters": {
                p.name: {"value": p.value, "type": p.type, "cell": p.cell, "line": p.line}
                for p in self.parameters.values()
            },
            "artifacts": [
                {"name": d.name, "cell": d.info.number, "role": d.role, "line": d.line}
                for d in self.artifacts.values()
            ],
            "entry_point": entry,
            "metrics": self.metric_names,
            "imports": sorted({i.statement for i in self.imports.values()}),
            "dependency_hints": self.pip_hints,
            "problems": [p.to_json() for p in self.errors],
            "warnings": [p.to_json() for p in self.warnings],
        }


def analyze(notebook: Notebook) -> Analysis:
    """Analyse every cell of ``notebook`` and resolve names across roles."""
    return _Analyzer(notebook).run()


def _sequence_io(infos: Iterable[CellInfo]) -> tuple[set[str], set[str]]:
    """Inputs/outputs of cells run one after the other."""
    inputs: set[str] = set()
    outputs: set[str] = set()
    for info in infos:
        inputs |= set(info.inputs) - outputs
        outputs |= set(info.outputs)
    return inputs, outputs


class _Analyzer(PredictionRules):
    def __init__(self, notebook: Notebook) -> None:
        self.notebook = notebook
        self.problems: list[Problem] = []
        kernel, language = declared_kernel(notebook.metadata)
        self.cells = [self._cell(cell) for cell in notebook.cells]
        # Reading another language as Python finds only noise: its one problem is that.
        self.foreign = None
        if language != "python":
            self.foreign = Problem(
                "error",
                notebook.cells[0].number if notebook.cells else 1,
                None,
                None,
                f"the notebook is written in {language} (kernel `{kernel or language}`): "
                "nbprod reads and extracts Python notebooks only",
                "write the model in a Python notebook; `nbprod test --all` still "
                "executes this one on its own kernel",
            )
        self.imports: dict[str, Import] = {}
        self.star_imports: list[Import] = []
        for info in self.cells:
            for statement in info.statements:
                for imported in statement.imports:
                    if imported.star:
                        self.star_imports.append(imported)
                        self.problem(
                            "warning" if info.role is None else "error",
                            info,
                            imported.line,
                            f"`{imported.statement}` hides which names it defines",
                            "import the names you use explicitly "
                            f"(`from {imported.statement.split()[1]} import a, b`)",
                            name="*",
                        )
                    else:
                        self.imports.setdefault(imported.name, imported)
        self.run_files: dict[str, Path] = {}
        for info in self.cells:
            for magic in info.parsed.magics:
                self._run_magic(info, magic.text, magic.line)
        self.role_imports: dict[str, set[str]] = {}

    def _run_magic(self, info: CellInfo, text: str, line: int) -> None:
        """``%run helpers.py`` defines the script's top-level names in the notebook: read
        them as imports from a local module of that name, which extraction vendors."""
        words = text.split()
        if not words or words[0] != "%run" or not words[-1].endswith(".py"):
            return
        file = self.notebook.path.parent / words[-1].strip("'\"")
        stem = file.stem
        try:
            tree = ast.parse(file.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
            self.problem(
                "warning",
                info,
                line,
                f"`{text}` runs {file.name}, which nbprod could not read",
                f"check that {file.name} is beside the notebook",
            )
            return
        if not stem.isidentifier():
            return
        self.run_files[stem] = file
        for statement in scan_statements(tree.body):
            for name in statement.writes:
                self.imports.setdefault(
                    name, Import(name, f"from {stem} import {name}", stem, line)
                )

    # -- per cell ------------------------------------------------------------------------
    def _cell(self, cell: Cell) -> CellInfo:
        parsed = parse_cell(cell.source)
        info = CellInfo(cell=cell, parsed=parsed, statements=scan_statements(parsed.statements))
        if cell.extra_roles:
            roles = ", ".join([cell.role or "", *cell.extra_roles])
            self.problem(
                "error",
                info,
                None,
                f"the cell has more than one role: {roles}",
                "keep one role tag per cell; split the cell if it does two jobs",
            )
        if parsed.syntax_error is not None:
            error = parsed.syntax_error
            severity: Severity = "error" if cell.role else "warning"
            self.problem(
                severity,
                info,
                error.lineno,
                f"the cell does not parse: {error.msg}",
                "fix the syntax; nbprod reads the cell as Python (with IPython magics)",
            )
        for magic in parsed.magics if cell.role else []:
            if magic.text.startswith("%run ") and magic.text.rstrip("'\"").endswith(".py"):
                continue  # its script is vendored (see _run_magic)
            self.problem(
                "warning",
                info,
                magic.line,
                f"IPython magic `{magic.text}` is ignored in the extracted package",
                None,
            )
        if parsed.foreign_cell_magic and cell.role:
            self.problem(
                "error",
                info,
                1,
                f"a `%%{parsed.foreign_cell_magic}` cell is not Python and cannot be extracted",
                "remove the role tag from this cell, or rewrite it in Python",
            )
        defined: set[str] = set()
        for statement in info.statements:
            for name, line in statement.reads.items():
                if name not in defined:
                    info.inputs.setdefault(name, line)
            for name in statement.deletes:
                defined.discard(name)
                info.outputs.pop(name, None)
            for name, line in statement.writes.items():
                defined.add(name)
                info.outputs[name] = line
            for writes in statement.global_writes.values():
                for name in writes:
                    info.outputs.setdefault(name, statement.line)
        return info

    # -- the whole notebook ----------------------------------------------------------------
    def run(self) -> Analysis:
        self.parameters = self._parameters()
        self._check_roles_present()
        self._resolve_training()
        entry, code, artifacts = self._prediction()
        fixtures = self._tests(entry, code, artifacts)
        excluded = self._metrics_outside_training(code)
        package = self._package_name()
        pip = [p for info in self.cells for p in info.parsed.pip_packages]
        metric_names = sorted(
            {
                n
                for info in self.role_cells("metrics")
                for n in info.outputs
                if n not in self.imports
            }
        )
        return Analysis(
            notebook=self.notebook,
            cells=self.cells,
            imports=self.imports,
            parameters=self.parameters,
            artifacts=artifacts,
            entry=entry,
            problems=[self.foreign]
            if self.foreign
            else sorted(self.problems, key=lambda p: (p.cell, p.line or 0)),
            prediction_code=code,
            module_code=self._prediction_order(),
            role_imports={role: sorted(names) for role, names in self.role_imports.items()},
            pip_hints=list(dict.fromkeys(pip)),
            metric_names=metric_names,
            test_fixtures=fixtures,
            training_excluded=excluded,
            star_imports=self.star_imports,
            package=package,
            run_files=self.run_files,
        )

    def _package_name(self) -> str:
        modules = {i.module for i in self.imports.values() if i.module}
        modules |= {i.module for i in self.star_imports if i.module}
        name, renamed = package_name(self.notebook, modules)
        first = self.cells[0] if self.cells else None
        if renamed and first is not None and not self.foreign:
            self.problem(
                "warning",
                first,
                None,
                renamed,
                f'to choose another name, set it in the notebook metadata: "nbprod": '
                f'{{"name": "{name}"}}',
            )
        if (
            first is not None
            and self.notebook.settings.name is not None
            and is_taken(name, modules)
        ):
            self.problem(
                "error",
                first,
                None,
                f"metadata.nbprod.name `{name}` is the name of a module the package needs: "
                "installing it would shadow that module",
                'choose another name, e.g. "nbprod": {"name": "' + name + '_model"}',
                name=name,
            )
        return name

    def _check_roles_present(self) -> None:
        if not any(info.role for info in self.cells):
            first = self.cells[0] if self.cells else None
            self.problems.append(
                Problem(
                    "error",
                    first.number if first else 1,
                    None,
                    None,
                    "no cell has an nbprod role",
                    "tag cells with parameters, data, features, train, metrics, inference or test "
                    "(JupyterLab: property inspector → cell tags)",
                )
            )
        elif not self.role_cells("inference"):
            last = self.role_cells(*ROLES)[-1]
            self.problems.append(
                Problem(
                    "error",
                    last.number,
                    last.role,
                    None,
                    "no cell is tagged `inference`, so there is nothing to predict with",
                    "tag the cell that defines `def predict(...)` (or that calls the model) "
                    "`inference`",
                )
            )

    def _parameters(self) -> dict[str, Parameter]:
        found: dict[str, Parameter] = {}
        for info in self.role_cells("parameters"):
            for statement in info.statements:
                node = statement.node
                targets: list[ast.expr]
                if isinstance(node, ast.Assign):
                    targets, value = node.targets, node.value
                elif isinstance(node, ast.AnnAssign) and node.value is not None:
                    targets, value = [node.target], node.value
                elif isinstance(node, ast.Import | ast.ImportFrom):
                    continue
                else:
                    self.problem(
                        "error",
                        info,
                        node.lineno,
                        f"`{ast.unparse(node)[:60]}` is not an assignment",
                        "a parameters cell holds only `name = literal` lines; move the rest "
                        "to a data or train cell",
                    )
                    continue
                try:
                    literal = ast.literal_eval(value)
                except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                    names = ", ".join(f"`{t}`" for t in map(ast.unparse, targets))
                    self.problem(
                        "error",
                        info,
                        node.lineno,
                        f"parameter {names} is not a literal value: `{ast.unparse(value)[:60]}`",
                        "parameters must be literals (numbers, strings, booleans, None, lists, "
                        "dicts) so papermill can override them; compute derived values in a "
                        "data or train cell",
                        name=ast.unparse(targets[0]),
                    )
                    continue
                for target in targets:
                    if not isinstance(target, ast.Name):
                        self.problem(
                            "error",
                            info,
                            node.lineno,
                            f"`{ast.unparse(target)}` is not a plain name",
                            "assign each parameter to a simple name: `n_estimators = 100`",
                        )
                        continue
                    found[target.id] = Parameter(
                        target.id, literal, type(literal).__name__, info.number, node.lineno
                    )
        return found

    # -- name resolution -------------------------------------------------------------
    def _resolve_training(self) -> None:
        """Every read of an extracted cell must come from an extracted cell before it."""
        extracted: dict[str, Definition] = {}
        everything: dict[str, Definition] = {}
        for position, info in enumerate(self.cells):
            if info.role is not None and info.role != "inference":
                self._resolve_reads(info, extracted, everything, position)
            self._apply(info, everything)
            if info.role is not None:
                self._apply(info, extracted)

    def _resolve_reads(
        self,
        info: CellInfo,
        extracted: dict[str, Definition],
        everything: dict[str, Definition],
        position: int,
    ) -> None:
        local: dict[str, Definition] = dict(extracted)
        for statement in info.statements:
            pending = [(name, line) for name, line in statement.reads.items()]
            seen: set[str] = set()
            while pending:
                name, line = pending.pop(0)
                if name in seen:
                    continue
                seen.add(name)
                definition = local.get(name)
                if definition is not None:
                    if definition.kind == "import":
                        self.role_imports.setdefault(info.role or "", set()).add(name)
                    elif definition.kind in ("def", "class"):
                        pending += [(n, line) for n in sorted(definition.lazy)]
                    continue
                if name in self.imports:
                    self.role_imports.setdefault(info.role or "", set()).add(name)
                    continue
                if name in BUILTINS:
                    continue
                self._unresolved(info, name, line, everything, position)
            self._apply_statement(info, statement, local)

    def _unresolved(
        self,
        info: CellInfo,
        name: str,
        line: int,
        everything: dict[str, Definition],
        position: int,
    ) -> None:
        untagged = everything.get(name)
        if untagged is not None and untagged.role is None:
            role = self._suggest_role(info.role, untagged)
            self.problem(
                "error",
                info,
                line,
                f"reads `{name}`, which only the untagged cell {untagged.info.number} defines",
                f"tag cell {untagged.info.number} `{role}`",
                name=name,
            )
            return
        later = self._later_definition(name, position)
        if later is not None:
            where = f"cell {later.info.number} ({later.role or 'untagged'})"
            self.problem(
                "error",
                info,
                line,
                f"reads `{name}` before it is defined: {where} defines it later",
                f"move the code that defines `{name}` above cell {info.number}",
                name=name,
            )
            return
        severity: Severity = "warning" if self.star_imports else "error"
        hint = "define it in an extracted cell above, or import it"
        if self.star_imports:
            hint = f"it may come from `{self.star_imports[0].statement}`; import it explicitly"
        self.problem(severity, info, line, f"reads `{name}`, which no cell defines", hint, name)

    def _later_definition(self, name: str, position: int) -> Definition | None:
        for info in self.cells[position:]:
            for statement in info.statements:
                if name in statement.writes:
                    return Definition(name, info, statement, "value")
        return None

    # -- tests and metrics -------------------------------------------------------------
    def _tests(
        self,
        entry: EntryPoint | None,
        code: list[Definition],
        artifacts: dict[str, Definition],
    ) -> dict[int, list[str]]:
        """For each test cell, the training values it reads (recorded when the notebook runs)."""
        provided = {d.name for d in code} | set(artifacts) | set(self.parameters)
        provided |= {d.name for d in self._prediction_order()}
        if entry is not None:
            provided.add(entry.name)
        fixtures: dict[int, list[str]] = {}
        for info in self.role_cells("test"):
            needed = [
                n
                for n in info.inputs
                if n not in provided and n not in self.imports and n not in BUILTINS
            ]
            fixtures[info.number] = needed
            for name in info.inputs:
                if name in self.imports:
                    self.role_imports.setdefault("test", set()).add(name)
        return fixtures

    def _metrics_outside_training(self, code: list[Definition]) -> list[int]:
        """Metrics cells that call inference code cannot run inside train()."""
        inference_names = {d.name for d in code if d.role == "inference"}
        # values only plain inference statements make (`y_pred = model.predict(X_test)`)
        training_made = {n for info in self.role_cells(*TRAINING_ROLES) for n in info.outputs}
        inference_names |= {
            n for info in self.role_cells("inference") for n in info.outputs
        } - training_made
        excluded = []
        for info in self.role_cells("metrics"):
            uses = inference_names & set(info.inputs)
            if uses:
                excluded.append(info.number)
                self.problem(
                    "warning",
                    info,
                    None,
                    f"the metrics cell reads {', '.join(f'`{n}`' for n in sorted(uses))} from "
                    "an inference cell, so the package's `train` does not recompute these metrics",
                    "compute metrics from the trained model directly to have train() report them",
                )
        return excluded
