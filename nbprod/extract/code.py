"""The Python of the generated ``pipeline.py``, cut from the notebook's cells.

Statements keep the user's own text (comments included); each block is headed by
the cell it came from. Imports are hoisted and only those the code uses are kept: at
module level those prediction needs and those of the notebook's own modules, inside
``_train_cells()`` the libraries only training needs, so that importing the package (and
predicting through ONNX Runtime) does not import them.
"""

from __future__ import annotations

import ast
import io
import textwrap
import tokenize
from collections.abc import Sequence
from dataclasses import dataclass, field

from nbprod.analysis.analyzer import Analysis, CellInfo
from nbprod.analysis.naming import is_library
from nbprod.analysis.scopes import BUILTINS, Statement

_CODE = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


@dataclass
class PipelineCode:
    imports: list[str]  # at module level: what the definitions and prediction use
    train_imports: list[str]  # inside _train_cells(): what only training uses
    module_blocks: list[str]  # features/inference definitions, at module level
    predict_block: str  # empty when the entry point is a notebook function
    train_body: str  # indented body of _train_cells()
    train_globals: list[str]
    metric_names: list[str]
    uses_display: bool
    nbprod_shims: list[tuple[str, str]]  # (name bound by `import nbprod`, stand-in)
    needs: set[str] = field(default_factory=set)


def pipeline_code(analysis: Analysis) -> PipelineCode:
    entry = analysis.entry
    assert entry is not None
    excluded = set(analysis.training_excluded)
    module_ids = {id(d.statement) for d in analysis.module_code} | _hoisted(analysis, excluded)
    module_blocks: list[str] = []
    module_statements: list[Statement] = []
    for info in analysis.role_cells("data", "features", "train", "metrics", "inference"):
        chosen = [s for s in info.statements if id(s) in module_ids]
        if chosen and info.number not in excluded:
            module_blocks.append(_block(info, chosen))
            module_statements += chosen
    predict_block = ""
    predict_statements: list[Statement] = []
    if entry.kind == "synthesized":
        predict_block, predict_statements = _synthesized(analysis)
    train_blocks: list[str] = []
    train_statements: list[Statement] = []
    for info in analysis.role_cells("data", "features", "train", "metrics"):
        if info.number in excluded:
            continue
        chosen = [s for s in info.statements if not _is_import(s) and id(s) not in module_ids]
        if chosen:
            train_blocks.append(_block(info, chosen))
            train_statements += chosen
    loads = _loaded_names(module_statements + predict_statements)
    imports = _hoisted_imports(analysis, loads)
    train_loads = _loaded_names(train_statements)
    train_imports = [s for s in _hoisted_imports(analysis, train_loads) if s not in imports]
    # The notebook's own modules stay at module level: a fitted object may refer to what
    # they define (``FunctionTransformer(clean)``) as a name of the pipeline module.
    own = {i.statement for i in analysis.imports.values() if not is_library(i.module)}
    imports += [s for s in train_imports if s in own]
    train_imports = [s for s in train_imports if s not in own]
    loads |= train_loads
    training_defined = {n for s in train_statements for n in s.writes}
    lazy_reads = {n for s in module_statements for names in s.lazy.values() for n in names}
    train_globals = sorted(
        set(analysis.parameters) | set(analysis.artifacts) | (lazy_reads & training_defined)
    )
    metrics = [n for n in analysis.metric_names if any(n in s.writes for s in train_statements)]
    body = "\n\n".join(train_blocks) or "pass"
    return PipelineCode(
        imports=imports,
        train_imports=train_imports,
        module_blocks=module_blocks,
        predict_block=predict_block,
        train_body=indent(body, "    "),
        train_globals=train_globals,
        metric_names=metrics,
        uses_display="display" in loads and "display" not in analysis.imports,
        nbprod_shims=_nbprod_shims(analysis, loads),
    )


@dataclass(frozen=True)
class LambdaHome:
    """A lambda inside an artifact, given a module-level name (``runtime/capture.py``)."""

    name: str
    source: str
    cell: int
    line: int


def lambda_homes(analysis: Analysis, recorded: list[dict[str, str]]) -> list[LambdaHome]:
    """The recorded lambdas whose source lies in an extracted cell (others have none)."""
    homes = []
    for lam in recorded:
        for info in analysis.cells:
            if info.role in (None, "test", "parameters"):
                continue
            found = next(
                (
                    node.lineno
                    for statement in info.statements
                    for node in ast.walk(statement.node)
                    if isinstance(node, ast.Lambda) and ast.unparse(node) == lam["source"]
                ),
                None,
            )
            if found is not None:
                homes.append(LambdaHome(lam["name"], lam["source"], info.number, found))
                break
    return homes


def add_lambdas(code: PipelineCode, analysis: Analysis, homes: list[LambdaHome]) -> None:
    """Write each lambda's module-level home, and import what its source reads."""
    if not homes:
        return
    lines = ["# --- lambdas inside the artifacts, named so that they can be loaded ---"]
    loads: set[str] = set()
    for home in homes:
        lines.append(f"# cell {home.cell}, line {home.line}")
        lines.append(f"{home.name} = {home.source}")
        lines.append(f'{home.name}.__name__ = {home.name}.__qualname__ = "{home.name}"')
        loads |= {n.id for n in ast.walk(ast.parse(home.source)) if isinstance(n, ast.Name)}
    code.module_blocks.append("\n".join(lines))
    # train() uses the named functions too, so that `<pkg> train -o DIR` can save again
    for home in homes:
        segment = _lambda_text(analysis, home)
        if segment is not None and "\n" not in segment:
            code.train_body = code.train_body.replace(segment, home.name)
    for statement in _hoisted_imports(analysis, loads):
        if statement not in code.imports:
            code.imports.append(statement)


def _lambda_text(analysis: Analysis, home: LambdaHome) -> str | None:
    """The lambda's text as the cell spells it (``ast.unparse`` may space it otherwise)."""
    info = next(c for c in analysis.cells if c.number == home.cell)
    for statement in info.statements:
        for node in ast.walk(statement.node):
            if isinstance(node, ast.Lambda) and ast.unparse(node) == home.source:
                segment = ast.get_source_segment(info.parsed.source, node)
                try:  # only the lambda's own text may be replaced, never a neighbour's
                    same = segment is not None and _unparsed(segment) == home.source
                except SyntaxError:
                    same = False
                return segment if same else None
    return None


def _unparsed(expression: str) -> str:
    return ast.unparse(ast.parse(expression.strip(), mode="eval").body)


def module_level_names(analysis: Analysis, homes: Sequence[LambdaHome] = ()) -> set[str]:
    """Every name ``<package>.pipeline`` defines at module level: what a saved artifact
    may refer to."""
    excluded = set(analysis.training_excluded)
    hoisted = _hoisted(analysis, excluded)
    names = set(analysis.imports) | set(analysis.parameters) | set(analysis.artifacts)
    names |= {d.name for d in analysis.module_code}
    for info in analysis.role_cells("data", "train", "metrics"):
        names |= {n for s in info.statements if id(s) in hoisted for n in s.writes}
    if analysis.entry is not None:
        names.add(analysis.entry.name)
    return names | {home.name for home in homes}


def _hoisted(analysis: Analysis, excluded: set[int]) -> set[int]:
    """Functions and classes of data, train and metrics cells, lifted to module level.

    A fitted object may refer to them (``FunctionTransformer(clean)``, a custom
    estimator, a ``scoring=`` function): the saved artifact names them as attributes of
    ``<package>.pipeline``, so they must exist there, not only inside ``train()``. Only
    those whose definition itself (decorators, defaults, bases) reads nothing that
    training computes can move; the others stay where they were.
    """
    available = set(analysis.imports) | set(analysis.parameters) | BUILTINS
    available |= {d.name for d in analysis.module_code}
    hoisted: set[int] = set()
    for info in analysis.role_cells("data", "train", "metrics"):
        if info.number in excluded:
            continue
        for statement in info.statements:
            if isinstance(statement.node, _CODE) and set(statement.reads) <= available:
                hoisted.add(id(statement))
                available |= set(statement.writes)
    return hoisted


def _nbprod_shims(analysis: Analysis, loads: set[str]) -> list[tuple[str, str]]:
    """``import nbprod`` / ``from nbprod import log_metric`` in extracted code point at
    a stand-in in the generated module: the package must not need nbprod."""
    shims = []
    for name, imported in analysis.imports.items():
        if imported.module == "nbprod" and name in loads:
            shims.append(
                (name, "_logged_metrics" if name == "nbprod" else "_logged_metrics." + name)
            )
    return shims


def _is_import(statement: Statement) -> bool:
    node = statement.node
    return isinstance(node, ast.Import | ast.ImportFrom)


def _synthesized(analysis: Analysis) -> tuple[str, list[Statement]]:
    entry = analysis.entry
    assert entry is not None and entry.returns is not None
    blocks: list[str] = []
    statements: list[Statement] = []
    by_cell: dict[int, list[Statement]] = {}
    infos: dict[int, CellInfo] = {}
    for info, statement in entry.statements:
        by_cell.setdefault(info.number, []).append(statement)
        infos[info.number] = info
    for number, chosen in by_cell.items():
        info = infos[number]
        last = entry.returns
        kept = [s for s in chosen if not _is_import(s) and not isinstance(s.node, _CODE)]
        text = _block(info, kept)
        if last["kind"] == "expression" and number == last["cell"]:
            final = kept[-1].node
            assert isinstance(final, ast.Expr), "the analysis returns an expression statement"
            text = _block(info, kept[:-1]) if kept[:-1] else _header(info)
            text += f"\nreturn {ast.unparse(final.value)}"
        blocks.append(text)
        statements += kept
    if entry.returns["kind"] == "assignment":
        blocks.append(f"return {entry.returns['expression']}")
    args = ", ".join(entry.params)
    cells = ", ".join(str(n) for n in by_cell)
    doc = (
        f'"""Prediction of the notebook\'s inference cell{"s" if len(by_cell) > 1 else ""} '
        f'{cells}, as a function of its inputs."""'
    )
    body = indent("\n\n".join(blocks), "    ")
    return f"def {entry.name}({args}):\n    {doc}\n{body}\n", statements


def _header(info: CellInfo) -> str:
    return f"# --- cell {info.number} ({info.role}) ---"


def _block(info: CellInfo, statements: list[Statement]) -> str:
    """The statements' source with the comment lines directly above each kept."""
    lines = info.parsed.source.splitlines()
    chosen: list[str] = []
    previous_end = 0
    for statement in statements:
        node = statement.node
        first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
        start = first
        while start - 1 > previous_end and lines[start - 2].lstrip().startswith("#"):
            start -= 1
        end = node.end_lineno or node.lineno
        if chosen and start > previous_end + 1 and lines[start - 2].strip() == "":
            chosen.append("")
        chosen += lines[start - 1 : end]
        previous_end = end
    return _header(info) + "\n" + "\n".join(chosen).rstrip()


def _loaded_names(statements: list[Statement]) -> set[str]:
    names: set[str] = set()
    for statement in statements:
        for node in ast.walk(statement.node):
            if isinstance(node, ast.Name):
                names.add(node.id)
    return names


def _hoisted_imports(analysis: Analysis, loads: set[str]) -> list[str]:
    seen: list[str] = []
    for name, imported in analysis.imports.items():
        if (name in loads and name not in BUILTINS | {"display"}) or (
            name == "display" and (name in loads)
        ):
            if imported.statement.startswith("from __future__") or imported.module == "nbprod":
                continue
            if imported.statement not in seen:
                seen.append(imported.statement)
    return seen


def indent(code: str, prefix: str) -> str:
    """Indent code, leaving the inside of multi-line strings untouched."""
    keep: set[int] = set()
    try:
        for token in tokenize.generate_tokens(io.StringIO(code).readline):
            if token.type == tokenize.STRING and token.end[0] > token.start[0]:
                keep.update(range(token.start[0] + 1, token.end[0] + 1))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return textwrap.indent(code, prefix)
    out = []
    for number, line in enumerate(code.splitlines(), start=1):
        out.append(line if number in keep or not line.strip() else prefix + line)
    return "\n".join(out)
