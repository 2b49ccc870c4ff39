"""Shared state and name lookups of the analysis stages (training, prediction)."""

from __future__ import annotations

import ast
from typing import Literal

from nbprod.analysis.facts import CellInfo, Definition, Parameter, Problem, Severity
from nbprod.analysis.scopes import Import, Statement
from nbprod.notebook import Notebook
from nbprod.roles import TRAINING_ROLES


class Resolver:
    """What every analysis stage reads and writes: cells, imports, problems."""

    notebook: Notebook
    cells: list[CellInfo]
    imports: dict[str, Import]
    star_imports: list[Import]
    parameters: dict[str, Parameter]
    problems: list[Problem]
    role_imports: dict[str, set[str]]

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

    def role_cells(self, *roles: str | None) -> list[CellInfo]:
        return [info for info in self.cells if info.role in roles]

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

    def _apply_statement(
        self, info: CellInfo, statement: Statement, latest: dict[str, Definition]
    ) -> None:
        single = CellInfo(cell=info.cell, parsed=info.parsed, statements=[statement])
        self._apply(single, latest)

    @staticmethod
    def _suggest_role(reader: str | None, definition: Definition) -> str:
        if definition.kind in ("def", "class"):
            return "features"
        return {"inference": "train", "metrics": "train", "test": "train"}.get(reader or "", "data")

    def _training_definitions(self) -> dict[str, Definition]:
        found: dict[str, Definition] = {}
        for info in self.role_cells(*TRAINING_ROLES):
            self._apply(info, found)
        return found
