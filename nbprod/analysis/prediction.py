"""The prediction side of the analysis: the entry point (a notebook function, or one
synthesized from plain inference statements), the code prediction needs, and which
training values cross into it as artifacts or arguments."""

from __future__ import annotations

import ast
import re
from typing import Any

from nbprod.analysis.facts import (
    CellInfo,
    Definition,
    EntryPoint,
    is_display_call,
    is_literal_display,
)
from nbprod.analysis.resolution import Resolver
from nbprod.analysis.scopes import BUILTINS, Statement
from nbprod.notebook import PREDICTION_ROLES

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
# Cells whose changes to a value are part of training (features: only its statements
# that are not module-level code, which are never re-run by the package).
TRAINED_BY = frozenset({"data", "features", "train", "metrics"})
# Methods of fitted estimators that map input rows to output rows.
_ROW_METHODS = frozenset(
    {"transform", "predict", "predict_proba", "predict_log_proba", "decision_function"}
)


_METRIC_NAME = re.compile(
    r"(score|error|accuracy|precision|recall|f1|auc|loss|r2|mse|rmse|mae|mape|logloss)", re.I
)


def _calls_row_method(node: ast.AST) -> bool:
    return any(
        isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr in _ROW_METHODS
        for n in ast.walk(node)
    )


_LOADERS = re.compile(r"^(read_|load|fetch_|open$|genfromtxt$|loadtxt$)|split|sample")


def _reads_rows(definition: Definition) -> bool:
    """Does the statement that made this value load or split data (``pd.read_csv``)?"""
    value = getattr(definition.statement.node, "value", None)
    return value is not None and any(_LOADERS.search(n) for n in _called_names(value))


def _called_names(node: ast.AST) -> list[str]:
    names = []
    for n in ast.walk(node):
        if isinstance(n, ast.Call):
            func = n.func
            names.append(func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", ""))
    return names


class PredictionRules(Resolver):
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
            # Made in one cell, fitted or filled by a training cell after it: prediction
            # needs the value training left behind, not the code that made it.
            fitted = self._trained_later(prediction.get(name))
            if fitted is not None:
                artifacts[name] = fitted
                continue
            if name in training_only and self._trained_later(training_only[name]):
                artifacts[name] = training_only[name]
                continue
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
            self._evaluating_inference(entry)
        self._changed_after_training(artifacts)
        ordered = [d for d in self._prediction_order() if d.name in code]
        return entry, ordered, artifacts

    def _trained_later(self, definition: Definition | None) -> Definition | None:
        """The last training statement after ``definition`` that rebinds or changes its
        value in place (``vec.fit(X)``, ``cols.append(c)``, ``obj.attr = v``), if any."""
        if definition is None or definition.kind != "value" or definition.role is None:
            return None
        name = definition.name
        found: Definition | None = None
        started = False
        for info in self.cells:
            for statement in info.statements:
                if statement is definition.statement:
                    started = True
                    continue
                if not started or info.role not in TRAINED_BY:
                    continue
                if name in statement.mutates or name in statement.writes:
                    found = Definition(name, info, statement, "value")
        return found

    def _evaluating_inference(self, entry: EntryPoint) -> None:
        """Plain inference statements that go on to score the prediction against the
        label (``err = mean_squared_error(y, y_pred)``) would make ``predict`` take the
        label and return the score: the cell does two jobs."""
        body = entry.statements
        predicting = [
            i for i, (_, statement) in enumerate(body) if _calls_row_method(statement.node)
        ]
        if not predicting:
            return
        head, tail = body[: predicting[-1] + 1], body[predicting[-1] + 1 :]
        read_by_head = {n for _, s in head for n in s.reads}
        labels = [p for p in entry.params if p not in read_by_head]
        scoring = [
            (info, statement)
            for info, statement in tail
            if any(self._is_metric(name) for name in _called_names(statement.node))
        ]
        if not labels and not scoring:
            return
        info, statement = (scoring or [t for t in tail if set(t[1].reads) & set(labels)])[0]
        last_info, last = head[-1]
        what = f"`{ast.unparse(statement.node)[:60]}`"
        if labels:
            what += f", which reads {', '.join(f'`{n}`' for n in labels)}"
        where = f"at line {statement.line}"
        if last_info is info:
            where = f"after line {last.node.end_lineno}"
        self.problem(
            "error",
            info,
            statement.line,
            f"the inference cell also evaluates the prediction ({what}): `{entry.signature}` "
            "would need the label and return the score",
            f"split cell {info.number} {where}: the prediction stays `inference`, tag the rest "
            "`metrics`",
        )

    def _is_metric(self, name: str) -> bool:
        imported = self.imports.get(name)
        if imported is not None and "metrics" in imported.statement:
            return True
        return _METRIC_NAME.search(name) is not None

    def _changed_after_training(self, artifacts: dict[str, Definition]) -> None:
        """An artifact that a later untagged or test cell rebinds or changes in place is
        not what training made: the run would save the changed value."""
        for name in sorted(artifacts):
            last_training: int | None = None
            changes: list[tuple[int, CellInfo, Statement]] = []
            for position, info in enumerate(self.cells):
                for statement in info.statements:
                    if name not in statement.writes and name not in statement.mutates:
                        continue
                    if info.role in TRAINED_BY:
                        last_training = position
                    elif info.role in (None, "test"):
                        changes.append((position, info, statement))
            if last_training is None:
                continue
            trained_in = self.cells[last_training].number
            for position, info, statement in changes:
                if position <= last_training:
                    continue
                if name in statement.writes:
                    line, what = statement.writes[name], "rebinds"
                    fix = f"give the new value another name in this cell (`{name}_2 = ...`)"
                else:
                    line, what = statement.mutates[name], "changes"
                    fix = (
                        f"work on a copy in this cell (`{name}_2 = sklearn.base.clone({name})` "
                        f"or `copy.deepcopy({name})`)"
                    )
                self.problem(
                    "error",
                    info,
                    line,
                    f"{what} the artifact `{name}` after training (cell {trained_in} made it): "
                    "the run would save this value, not what training produced",
                    f"{fix}; if it belongs to training, tag cell {info.number} `train`",
                    name=name,
                )
                break

    def _unresolved_prediction(
        self, info: CellInfo, name: str, line: int | None, everything: dict[str, Definition]
    ) -> None:
        reader = self.role_cells("inference")[0] if info.role not in PREDICTION_ROLES else info
        untagged = everything.get(name)
        if untagged is not None and untagged.role is None:
            cell = untagged.info.number
            role = self._suggest_role("inference", untagged)
            hint = f"tag cell {cell} `{role}`"
            if role == "train" and line is not None:
                # read directly by plain inference statements: rows or a fitted value?
                data, fitted = (
                    f"`data` if `{name}` is rows to predict on (it becomes an argument of "
                    f"`{self.notebook.settings.inference or 'predict'}`)",
                    "`train` if it is fitted or learned (it is saved with the model)",
                )
                first, second = (data, fitted) if _reads_rows(untagged) else (fitted, data)
                hint = f"tag cell {cell} {first}; or {second}"
            self.problem(
                "error",
                reader,
                line,
                f"prediction reads `{name}`, which only the untagged cell {cell} defines",
                hint,
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
        if is_literal_display(value):
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
            for function, (_, statement) in functions.items()
            for name in statement.lazy.get(function, set())
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
            if isinstance(node, ast.Expr) and not is_display_call(node.value):
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
                    literal = is_constant and value is not None and is_literal_display(value)
                    if not (inference_functions and (literal or statement.lazy)):
                        continue
                if not (is_code or is_constant or statement.lazy):
                    continue
                self._apply_statement(info, statement, latest)
                constants |= set(statement.writes)
            order += latest.values()
        return order
