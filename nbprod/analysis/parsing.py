"""Turn a cell's source into Python statements, understanding IPython syntax.

IPython's own input transformer rewrites ``%magic``, ``%%cell magic`` and ``!shell``
into ``get_ipython()`` calls, so nbprod parses exactly what the kernel would run.
Those calls are then recognised, reported as warnings (or dependency hints for
``!pip install``) and left out of the extracted code. A cell the transformer would
leave as it is (plain Python) is parsed without it: importing IPython takes longer
than checking a notebook.
"""

from __future__ import annotations

import ast
import re
import shlex
from dataclasses import dataclass, field

# Cell magics whose body is ordinary Python that runs in the user namespace.
PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun"})
# Line magics whose argument is a Python statement run in the user namespace.
PYTHON_LINE_MAGICS = frozenset({"time"})
_MAGIC_CALLS = frozenset({"run_line_magic", "run_cell_magic", "system", "getoutput"})
# Lines IPython's clean-up rewrites even in valid Python: whitespace-only lines (its
# dedent empties them) and prompts pasted from a console (>>>, ...:, In [1]:).
_CLEANED_UP_LINE = re.compile(
    r"^([^\S\n]+$|\s*(>>>|\.{3,}:)|(\[\w+\] )?In \[\d+\]: )", re.MULTILINE
)


@dataclass(frozen=True)
class Magic:
    line: int
    kind: str  # "line", "cell" or "shell"
    text: str


@dataclass
class ParsedCell:
    """What the kernel would run: the statements and the source they came from."""

    source: str
    statements: list[ast.stmt] = field(default_factory=list)
    magics: list[Magic] = field(default_factory=list)
    pip_packages: list[str] = field(default_factory=list)
    syntax_error: SyntaxError | None = None
    # Set when the whole cell is a cell magic nbprod cannot extract (%%bash, %%writefile ...).
    foreign_cell_magic: str | None = None

    def segment(self, node: ast.stmt) -> str:
        """The source lines of a statement, decorators and comments above it excluded."""
        lines = self.source.splitlines()
        first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
        end = node.end_lineno or node.lineno
        return "\n".join(lines[first - 1 : end])


def parse_cell(source: str) -> ParsedCell:
    """Parse one cell; never raises for bad input (the error is kept on the result).

    Line numbers count from the cell's first line, blank lines above the code included
    (IPython drops those before running a cell; see ``leading_blank_lines``).
    """
    blank = leading_blank_lines(source)
    if blank:
        return _shift(parse_cell(source.split("\n", blank)[blank]), blank)
    cell = ParsedCell(source=source)
    tree = _plain_python(source)
    if tree is None:
        try:
            cell.source = _ipython_transform(source)
        except Exception as error:  # IPython raises various errors on malformed magics
            return ParsedCell(source=source, syntax_error=SyntaxError(str(error)))
        try:
            tree = ast.parse(cell.source)
        except SyntaxError as error:
            # Report the line in the user's source; the transform keeps line numbers for
            # ordinary code, which is what fails to parse.
            cell.source = source
            cell.syntax_error = error
            return cell
        except (RecursionError, MemoryError, ValueError) as error:
            cell.source = source
            cell.syntax_error = SyntaxError(
                f"Python cannot parse it ({type(error).__name__}: nested or repeated too deeply)"
            )
            return cell
    python_lines = cell.source.splitlines()
    for node in tree.body:
        magic = _magic_call(node)
        if magic is None:
            cell.statements.append(node)
            continue
        method, args = magic
        if method == "run_cell_magic":
            name, line, body = [*args, "", "", ""][:3]
            if name in PYTHON_CELL_MAGICS:
                cell.magics.append(Magic(1, "cell", f"%%{name} {line}".strip()))
                inner = parse_cell(body)
                inner.magics.insert(0, Magic(1, "cell", f"%%{name} {line}".strip()))
                return _shift(inner, 1)
            cell.magics.append(Magic(1, "cell", f"%%{name} {line}".strip()))
            cell.foreign_cell_magic = name
            if name in {"bash", "sh", "script"}:
                cell.pip_packages.extend(_pip_packages(body))
            continue
        text = " ".join(args)
        if method == "run_line_magic":
            cell.magics.append(Magic(node.lineno, "line", f"%{text}"))
            timed = _line_magic_statement(args, node.lineno)
            if timed:
                cell.statements.extend(timed)
                python_lines[node.lineno - 1] = args[1]
            if args and args[0] in {"pip", "conda"}:
                cell.pip_packages.extend(_pip_packages(f"pip {args[1] if len(args) > 1 else ''}"))
        else:
            shell = args[0] if args else ""
            cell.magics.append(Magic(node.lineno, "shell", f"!{shell}"))
            cell.pip_packages.extend(_pip_packages(shell))
    cell.source = "\n".join(python_lines)
    return cell


def leading_blank_lines(source: str) -> int:
    """How many empty or whitespace-only lines open the cell.

    IPython removes them before it compiles a cell, so the line numbers of its
    tracebacks are that many lines short of the line the user sees.
    """
    for count, line in enumerate(source.split("\n")):
        if line.strip():
            return count
    return 0  # nothing but blank lines: nothing to number


def _plain_python(source: str) -> ast.Module | None:
    """The tree of a cell IPython's transformer would return unchanged, else None.

    Its clean-up changes only leading blank or indented lines, whitespace-only lines
    and console prompts; everything else it rewrites (magics, ``!shell``, ``x?``,
    autocall) is a syntax error in Python, so a cell without those lines that parses
    needs no IPython.
    """
    if source and (source[0].isspace() or _CLEANED_UP_LINE.search(source)):
        return None
    try:
        return ast.parse(source)
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        return None


def _ipython_transform(source: str) -> str:
    # Imported when a cell needs it: IPython takes a quarter of a second to import.
    from IPython.core.inputtransformer2 import TransformerManager

    return str(TransformerManager().transform_cell(source))


def _line_magic_statement(args: list[str], line: int) -> list[ast.stmt]:
    """The statement of ``%time model = fit(X)``, at the magic's line; else nothing."""
    if len(args) < 2 or args[0] not in PYTHON_LINE_MAGICS or "\n" in args[1]:
        return []
    try:
        statements = ast.parse(args[1]).body
    except SyntaxError:
        return []
    for statement in statements:
        ast.increment_lineno(statement, line - 1)
    return statements


def _shift(cell: ParsedCell, lines: int) -> ParsedCell:
    """Line numbers of a ``%%time`` body, or of code below blank lines, count from the
    cell's first line."""
    for node in cell.statements:
        ast.increment_lineno(node, lines)
    cell.source = "\n" * lines + cell.source
    if cell.syntax_error is not None and cell.syntax_error.lineno is not None:
        cell.syntax_error.lineno += lines
    return cell


def _magic_call(node: ast.stmt) -> tuple[str, list[str]] | None:
    """``get_ipython().method('a', 'b')`` as a statement or assignment, else None."""
    value = node.value if isinstance(node, ast.Expr | ast.Assign) else None
    if not (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Attribute)
        and value.func.attr in _MAGIC_CALLS
        and isinstance(value.func.value, ast.Call)
        and isinstance(value.func.value.func, ast.Name)
        and value.func.value.func.id == "get_ipython"
    ):
        return None
    if isinstance(node, ast.Assign):
        return None  # `x = !ls` assigns a value: keep the statement visible to analysis
    args = [a.value if isinstance(a, ast.Constant) else ast.unparse(a) for a in value.args]
    return value.func.attr, [str(a) for a in args]


_PIP = re.compile(r"(?:^|[;&|]\s*)(?:python\s+-m\s+)?pip3?\s+install\s+([^;&|\n]+)")


def _pip_packages(command: str) -> list[str]:
    """Package requirements named by ``pip install ...`` in a shell command."""
    packages: list[str] = []
    for match in _PIP.finditer(command):
        try:
            words = shlex.split(match.group(1))
        except ValueError:
            words = match.group(1).split()
        packages.extend(w for w in words if not w.startswith("-") and "$" not in w)
    return packages
