"""The facts static analysis establishes about a notebook: cells, definitions,
parameters, the entry point and the problems found. Plain data, no logic."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any, Literal

from nbprod.analysis.parsing import ParsedCell
from nbprod.analysis.scopes import Statement
from nbprod.notebook import Cell

Severity = Literal["error", "warning"]


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


def is_literal_display(value: ast.expr) -> bool:
    try:
        ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False
    return True


def is_display_call(value: ast.expr) -> bool:
    return (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Name)
        and value.func.id in {"print", "display"}
    )
