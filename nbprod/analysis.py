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
from dataclasses import dataclass, field
from typing import Any, Literal

from .notebook import PREDICTION_ROLES, ROLES, TRAINING_ROLES, Cell, Notebook
from .parsing import ParsedCell, parse_cell
from .scopes import BUILTINS, Import, Statement, scan_statements

Severity = Literal["error", "warning"]
# Reductions of a data frame give values fitted on training data, not input rows.
_REDUCTIONS = frozenset(
    {
        "mean",
        "median",
        "std",
        "var",
        "sum",
        "min",
        "max",
        "quantile",
        "nunique",
        "unique",
        "value_counts",
        "count",
        "mode",
        "describe",
        "tolist",
        "to_list",
        "to_dict",
        "keys",
    }
)
# Methods of fitted estimators that map input rows to output rows.
_ROW_METHODS = frozenset(
    {"transform", "predict", "predict_proba", "predict_log_proba", "decision_function"}
)


@dataclass(frozen=True)
class Problem:
    severity: Severity
    cell: int
    role: str | None
    line: int | None
    message: str
    hint: str | None = None
    name: str | None = None

    def __str__(self) -> str:
        where = f"cell {self.cell} ({self.role or 'untagged'})"
        where += f", line {self.line}" if self.line else ""
        text = f"{where}: {self.message}"
        return f"{text}\n  fix: {self.hint}" if self.hint else text

    def to_json(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "cell": self.cell,
            "role": self.role,
            "line": self.line,
            "name": self.name,
            "message": self.message,
            "hint": self.hint,
        }


@dataclass
class CellInfo:
    """One code cell: its parse, its statements' scope facts, inputs and outputs."""

    cell: Cell
    parsed: ParsedCell
    statements: list[Statement]
    inputs: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, int] = field(default_factory=dict)

    @property
    def role(self) -> str | None:
        return self.cell.role

    @property
    def number(self) -> int:
        return self.cell.number


@dataclass(frozen=True)
class Definition:
    """Where a name gets its value: the last statement of a cell that binds it."""

    name: str
    info: CellInfo
    statement: Statement
    kind: Literal["def", "class", "value", "import"]

    @property
    def role(self) -> str | None:
        return self.info.role

    @property
    def line(self) -> int:
        return self.statement.writes.get(self.name, self.statement.line)

    @property
    def lazy(self) -> set[str]:
        return self.statement.lazy.get(self.name, set())


@dataclass(frozen=True)
class Parameter:
    name: str
    value: Any
    type: str
    cell: int
    line: int


@dataclass
class EntryPoint:
    name: str
    kind: Literal["function", "synthesized"]
    params: list[str]
    cell: int
    returns: dict[str, Any] | None = None  # synthesized only: what is returned
    statements: list[tuple[CellInfo, Statement]] = field(default_factory=list)

    @property
    def signature(self) -> str:
        return f"{self.name}({', '.join(self.params)})"


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
            "package": self.notebook.package_name,
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


class _Analyzer:
    def __init__(self, notebook: Notebook) -> None:
        self.notebook = notebook
        self.problems: list[Problem] = []
        self.cells = [self._cell(cell) for cell in notebook.cells]
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
        self.role_imports: dict[str, set[str]] = {}

    def problem(
        self,
        severity: Severity,
        info: CellInfo,
        line: int | None,
        message: str,
        hint: str | None = None,
        name: str | None = None,
    ) -> None:
        self.problems.append(Problem(severity, info.number, info.role, line, message, hint, name))

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
            problems=sorted(self.problems, key=lambda p: (p.cell, p.line or 0)),
            prediction_code=code,
            module_code=self._prediction_order(),
            role_imports={role: sorted(names) for role, names in self.role_imports.items()},
            pip_hints=list(dict.fromkeys(pip)),
            metric_names=metric_names,
            test_fixtures=fixtures,
            training_excluded=excluded,
            star_imports=self.star_imports,
        )

    def role_cells(self, *roles: str | None) -> list[CellInfo]:
        return [info for info in self.cells if info.role in roles]

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
    def _definitions_before(self, position: int) -> dict[str, Definition]:
        """The latest binding of each name by cells before position (any role)."""
        latest: dict[str, Definition] = {}
        for info in self.cells[:position]:
            self._apply(info, latest)
        return latest

    @staticmethod
    def _apply(info: CellInfo, latest: dict[str, Definition]) -> None:
        for statement in info.statements:
            for name in statement.deletes:
                latest.pop(name, None)
            for name in statement.writes:
                node = statement.node
                kind: Literal["def", "class", "value", "import"] = "value"
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
                    kind = "def"
                elif isinstance(node, ast.ClassDef) and node.name == name:
                    kind = "class"
                elif isinstance(node, ast.Import | ast.ImportFrom):
                    kind = "import"
                elif name in statement.lazy:
                    kind = "def"  # name = lambda ...
                latest[name] = Definition(name, info, statement, kind)
            for names in statement.global_writes.values():
                for name in names:
                    latest.setdefault(name, Definition(name, info, statement, "value"))

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

    def _apply_statement(
        self, info: CellInfo, statement: Statement, latest: dict[str, Definition]
    ) -> None:
        single = CellInfo(cell=info.cell, parsed=info.parsed, statements=[statement])
        self._apply(single, latest)

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

    @staticmethod
    def _suggest_role(reader: str | None, definition: Definition) -> str:
        if definition.kind in ("def", "class"):
            return "features"
        return {"inference": "train", "metrics": "train", "test": "train"}.get(reader or "", "data")

    # -- prediction: entry point, code, artifacts ------------------------------------------
    def _prediction(self) -> tuple[EntryPoint | None, list[Definition], dict[str, Definition]]:
        inference = self.role_cells("inference")
        if not inference:
            return None, [], {}
        entry = self._entry_point(inference)
        if entry is None:
            return None, [], {}
        prediction = self._prediction_definitions()
        training = self._definitions_before(len(self.cells))
        training_only = {
            name: d for name, d in self._training_definitions().items() if name not in prediction
        }
        code: dict[str, Definition] = {}
        artifacts: dict[str, Definition] = {}
        arguments: list[str] = []
        pending: list[tuple[str, int, int | None]]
        if entry.kind == "function":
            pending = [(n, entry.cell, None) for n in sorted(prediction[entry.name].lazy)]
            code[entry.name] = prediction[entry.name]
        else:
            pending = []
            defined: set[str] = set()
            for info, statement in entry.statements:
                for name, read_line in statement.reads.items():
                    if name not in defined:
                        pending.append((name, info.number, read_line))
                defined |= set(statement.writes)
        seen: set[str] = set()
        while pending:
            name, cell_number, line = pending.pop(0)
            if name in seen:
                continue
            seen.add(name)
            info = next(c for c in self.cells if c.number == cell_number)
            if name in prediction:
                definition = prediction[name]
                code[name] = definition
                follow = (
                    definition.lazy
                    if definition.kind in ("def", "class")
                    else set(definition.statement.reads)
                )
                pending += [(n, definition.info.number, None) for n in sorted(follow)]
            elif name in training_only and training_only[name].role == "parameters":
                continue
            elif name in self.imports:
                self.role_imports.setdefault("inference", set()).add(name)
            elif name in BUILTINS:
                continue
            elif name in training_only:
                definition = training_only[name]
                if definition.kind in ("def", "class"):
                    self.problem(
                        "error",
                        definition.info,
                        definition.line,
                        f"prediction uses `{name}`, which is defined in a "
                        f"{definition.role or 'untagged'} cell",
                        f"move `{name}` into a `features` cell so training and prediction share it",
                        name=name,
                    )
                elif entry.kind == "synthesized" and self._is_argument(
                    definition, line is not None
                ):
                    arguments.append(name)
                else:
                    artifacts[name] = definition
            else:
                self._unresolved_prediction(info, name, line, training)
        for name in self.notebook.settings.artifacts:
            if name in training_only:
                artifacts.setdefault(name, training_only[name])
        if entry.kind == "synthesized":
            entry.params = arguments
        ordered = [d for d in self._prediction_order() if d.name in code]
        return entry, ordered, artifacts

    def _unresolved_prediction(
        self, info: CellInfo, name: str, line: int | None, everything: dict[str, Definition]
    ) -> None:
        reader = self.role_cells("inference")[0] if info.role not in PREDICTION_ROLES else info
        untagged = everything.get(name)
        if untagged is not None and untagged.role is None:
            role = self._suggest_role("inference", untagged)
            self.problem(
                "error",
                reader,
                line,
                f"prediction reads `{name}`, which only the untagged cell "
                f"{untagged.info.number} defines",
                f"tag cell {untagged.info.number} `{role}`",
                name=name,
            )
            return
        self.problem(
            "error",
            reader,
            line,
            f"prediction reads `{name}`, which is neither an artifact, a parameter, an import "
            "nor defined in a features or inference cell",
            f"define `{name}` in a train cell (it becomes an artifact) or a features cell",
            name=name,
        )

    def _is_argument(self, definition: Definition, direct: bool) -> bool:
        """Is a training value read by plain inference statements an input, not an artifact?"""
        settings = self.notebook.settings
        if definition.name in settings.inputs:
            return True
        if definition.name in settings.artifacts or not direct:
            return False
        return self._is_data(definition, set())

    def _is_data(self, definition: Definition, seen: set[str]) -> bool:
        """Heuristic: is this value rows of data rather than something fitted?"""
        seen.add(definition.name)
        node = definition.statement.node
        value = getattr(node, "value", None)
        if value is None:
            return False
        if _is_literal_display(value):
            return False
        if definition.role in ("data", "features"):
            return True
        if isinstance(node, ast.Assign) and isinstance(value, ast.Call):
            func = value.func
            callee = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if "split" in callee:
                return True
        return self._derives_from_data(value, definition.info, seen)

    def _derives_from_data(self, value: ast.expr, info: CellInfo, seen: set[str]) -> bool:
        # x[...] / x.method(...) / x.attr of data, except reductions and .fit(...)
        node: ast.expr = value
        while isinstance(node, ast.Subscript | ast.Attribute | ast.Call):
            if isinstance(node, ast.Call):
                if isinstance(node.func, ast.Attribute) and (
                    node.func.attr in _REDUCTIONS or node.func.attr.startswith("fit")
                ):
                    return False
                # scaler.transform(X_test): a fitted object applied to rows gives rows
                if (
                    isinstance(node.func, ast.Attribute)
                    and node.func.attr in _ROW_METHODS
                    and node.args
                    and self._derives_from_data(node.args[0], info, seen)
                ):
                    return True
                node = node.func
            else:
                node = node.value
        if not isinstance(node, ast.Name) or node.id in seen:
            return False
        before = self._definitions_before(self.cells.index(info) + 1)
        source = before.get(node.id)
        return source is not None and source.role is not None and self._is_data(source, seen)

    def _entry_point(self, inference: list[CellInfo]) -> EntryPoint | None:
        functions: dict[str, tuple[CellInfo, Statement]] = {}
        for info in inference:
            for statement in info.statements:
                node = statement.node
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    functions[node.name] = (info, statement)
        wanted = self.notebook.settings.inference
        if wanted and functions:
            if wanted in functions:
                info, statement = functions[wanted]
                return self._function_entry(wanted, info, statement)
            self.problem(
                "error",
                inference[0],
                None,
                f"metadata.nbprod.inference names `{wanted}`, which no inference cell defines",
                f"define `def {wanted}(...)` in an inference cell or fix metadata.nbprod.inference",
                name=wanted,
            )
            return None
        called = {
            name
            for _, s in functions.values()
            for name in s.lazy.get(s.node.name, set())  # type: ignore[attr-defined]
        }
        candidates = [name for name in functions if name not in called]
        if len(candidates) == 1:
            info, statement = functions[candidates[0]]
            return self._function_entry(candidates[0], info, statement)
        if len(candidates) > 1:
            names = ", ".join(f"`{n}`" for n in candidates)
            self.problem(
                "error",
                functions[candidates[1]][0],
                functions[candidates[1]][1].line,
                f"more than one candidate entry point: {names}",
                'name the one to use in the notebook metadata: "nbprod": {"inference": '
                f'"{candidates[0]}"}}',
            )
            return None
        return self._synthesized_entry(inference)

    def _function_entry(self, name: str, info: CellInfo, statement: Statement) -> EntryPoint:
        node = statement.node
        assert isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        args = node.args
        params = [a.arg for a in [*args.posonlyargs, *args.args]]
        if args.vararg:
            params.append(f"*{args.vararg.arg}")
        params += [a.arg for a in args.kwonlyargs]
        if args.kwarg:
            params.append(f"**{args.kwarg.arg}")
        if not self._is_called_anywhere(name):
            self.problem(
                "warning",
                info,
                node.lineno,
                f"`{name}` is never called in the notebook, so nbprod cannot record what it "
                "returns from the notebook itself",
                f"add an example call in an untagged or test cell, e.g. `{name}(X_test.head())`; "
                "otherwise nbprod calls it on a sample of the data cell's output",
                name=name,
            )
        return EntryPoint(name=name, kind="function", params=params, cell=info.number)

    def _is_called_anywhere(self, name: str) -> bool:
        for info in self.cells:
            for statement in info.statements:
                if isinstance(statement.node, ast.FunctionDef) and statement.node.name == name:
                    continue
                for child in ast.walk(statement.node):
                    if isinstance(child, ast.Name) and child.id == name:
                        return True
        return False

    def _synthesized_entry(self, inference: list[CellInfo]) -> EntryPoint | None:
        statements = [(i, s) for i in inference for s in i.statements]
        if not statements:
            self.problem(
                "error",
                inference[0],
                None,
                "the inference cells hold no code",
                "define `def predict(...)` or write the prediction statements in the cell",
            )
            return None
        returns: dict[str, Any] | None = None
        for info, statement in reversed(statements):
            node = statement.node
            if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
                target = node.targets[-1] if isinstance(node, ast.Assign) else node.target
                returns = {
                    "kind": "assignment",
                    "expression": ast.unparse(target),
                    "cell": info.number,
                    "line": node.lineno,
                }
                break
            if isinstance(node, ast.Expr) and not _is_display_call(node.value):
                returns = {
                    "kind": "expression",
                    "expression": ast.unparse(node.value),
                    "cell": info.number,
                    "line": node.lineno,
                }
                break
        if returns is None:
            self.problem(
                "error",
                inference[-1],
                None,
                "the inference statements neither assign nor compute a value to return",
                "end the inference cell with the prediction, e.g. `y_pred = model.predict(X)`",
            )
            return None
        body = [
            (info, statement)
            for info, statement in statements
            if (info.number, statement.line) <= (returns["cell"], returns["line"])
        ]
        return EntryPoint(
            name=self.notebook.settings.inference or "predict",
            kind="synthesized",
            params=[],
            cell=inference[0].number,
            returns=returns,
            statements=body,
        )

    def _prediction_definitions(self) -> dict[str, Definition]:
        """Defs, classes and constants of features and inference cells, latest wins."""
        found: dict[str, Definition] = {}
        for definition in self._prediction_order():
            found[definition.name] = definition
        return found

    def _prediction_order(self) -> list[Definition]:
        order: list[Definition] = []
        constants: set[str] = set(self.parameters)
        inference_functions = any(
            isinstance(s.node, ast.FunctionDef | ast.AsyncFunctionDef)
            for info in self.role_cells("inference")
            for s in info.statements
        )
        for info in self.role_cells(*PREDICTION_ROLES):
            latest: dict[str, Definition] = {}
            for statement in info.statements:
                node = statement.node
                if isinstance(node, ast.Import | ast.ImportFrom):
                    continue
                is_code = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                is_constant = (
                    isinstance(node, ast.Assign | ast.AnnAssign)
                    and all(
                        n in constants or n in self.imports or n in BUILTINS
                        for n in statement.reads
                    )
                    and not statement.mutates
                )
                if info.role == "inference" and not is_code:
                    # Example calls and synthesized statements are handled elsewhere; beside
                    # a `def predict`, literal constants and lambdas are module-level code.
                    value = getattr(node, "value", None)
                    literal = is_constant and value is not None and _is_literal_display(value)
                    if not (inference_functions and (literal or statement.lazy)):
                        continue
                if not (is_code or is_constant or statement.lazy):
                    continue
                self._apply_statement(info, statement, latest)
                constants |= set(statement.writes)
            order += latest.values()
        return order

    def _training_definitions(self) -> dict[str, Definition]:
        found: dict[str, Definition] = {}
        for info in self.role_cells(*TRAINING_ROLES):
            self._apply(info, found)
        return found

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
        excluded = []
        for info in self.role_cells("metrics"):
            uses = inference_names & set(info.inputs)
            if uses:
                excluded.append(info.number)
                self.problem(
                    "warning",
                    info,
                    None,
                    f"the metrics cell calls {', '.join(f'`{n}`' for n in sorted(uses))} from "
                    "an inference cell, so the package's `train` does not recompute these metrics",
                    "compute metrics from the trained model directly to have train() report them",
                )
        return excluded


def _is_literal_display(value: ast.expr) -> bool:
    try:
        ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False
    return True


def _is_display_call(value: ast.expr) -> bool:
    return (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Name)
        and value.func.id in {"print", "display"}
    )
