"""Local code the notebook imports, copied into the package instead of depended on.

A ``helpers.py`` beside the notebook, or a ``src/`` package on a path it added, is not
a distribution anyone can install: a dependency named ``helpers`` would pull a
stranger's package from an index. The kernel recorded which modules it loaded from
such files (``local_modules.json``); the ones the extracted code needs, and the local
modules they import in turn, are copied under ``<package>/vendored/`` keeping their
layout, and every import of them (in ``pipeline.py`` and in the copies) is rewritten
to point there.
"""

from __future__ import annotations

import ast
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

VENDORED = "vendored"  # as ``runtime/capture.py`` re-points their functions and classes


@dataclass(frozen=True)
class Vendored:
    tops: frozenset[str]  # top-level module names now served from the package
    files: dict[str, Path]  # module name → file the kernel loaded it from


def local_modules(
    run_folder: Path, needed: set[str], scripts: dict[str, Path] | None = None
) -> Vendored:
    """The recorded local modules under the top-level names ``needed`` (closure over
    the local modules they import); ``scripts`` are files the notebook ``%run``s."""
    path = run_folder / "local_modules.json"
    recorded = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    recorded = {**{name: str(file) for name, file in (scripts or {}).items()}, **recorded}
    files = {name: Path(file) for name, file in recorded.items() if Path(file).is_file()}
    available = {name.split(".")[0] for name in files}
    tops: set[str] = set()
    pending = sorted(needed & available)
    while pending:
        top = pending.pop()
        if top in tops:
            continue
        tops.add(top)
        for name, file in files.items():
            if name.split(".")[0] == top:
                pending += sorted(_imported_tops(file) & available - tops)
    chosen = {name: file for name, file in files.items() if name.split(".")[0] in tops}
    return Vendored(frozenset(tops), chosen)


def copy_modules(vendored: Vendored, package_dir: Path, package: str) -> list[str]:
    """Copy the modules under ``package_dir/vendored`` with rewritten imports; return
    their dotted names, for the model card."""
    if not vendored.files:
        return []
    root = package_dir / VENDORED
    root.mkdir()
    (root / "__init__.py").write_text(
        '"""Modules the notebook imported from beside itself, vendored by nbprod."""\n',
        encoding="utf-8",
    )
    for name, file in sorted(vendored.files.items()):
        parts = name.split(".")
        is_package = file.name == "__init__.py"
        target = root.joinpath(*parts, "__init__.py") if is_package else root.joinpath(*parts)
        if not is_package:
            target = target.with_suffix(".py")
        target.parent.mkdir(parents=True, exist_ok=True)
        for parent in target.parent.relative_to(root).parents:
            init = root / parent / "__init__.py"
            if parent != Path(".") and not init.exists():
                init.write_text("", encoding="utf-8")
        source = file.read_text(encoding="utf-8")
        target.write_text(rewrite_imports(source, vendored.tops, package), encoding="utf-8")
        shutil.copymode(file, target)
    return sorted(vendored.files)


def rewrite_imports(source: str, tops: frozenset[str], package: str) -> str:
    """``source`` with each import of a vendored module pointed at its copy."""
    if not tops:
        return source
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    lines = source.splitlines(keepends=True)
    edits: list[tuple[ast.stmt, str]] = []
    for node in ast.walk(tree):
        replacement = rewrite_import(node, tops, package)
        if replacement is not None and isinstance(node, ast.stmt):
            edits.append((node, replacement))
    for node, text in sorted(edits, key=lambda e: e[0].lineno, reverse=True):
        start, end = node.lineno - 1, (node.end_lineno or node.lineno) - 1
        head = lines[start][: node.col_offset]
        tail = lines[end][node.end_col_offset or 0 :]
        lines[start : end + 1] = [head + text + tail]
    return "".join(lines)


def rewrite_import(node: ast.AST, tops: frozenset[str], package: str) -> str | None:
    """One import statement rewritten to the vendored copies, or None if it needs none."""
    prefix = f"{package}.{VENDORED}"
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        if node.module.split(".")[0] not in tops:
            return None
        names = ", ".join(ast.unparse(alias) for alias in node.names)
        return f"from {prefix}.{node.module} import {names}"
    if isinstance(node, ast.Import) and any(a.name.split(".")[0] in tops for a in node.names):
        statements = []
        for alias in node.names:
            if alias.name.split(".")[0] not in tops:
                statements.append(f"import {ast.unparse(alias)}")
            elif alias.asname:
                statements.append(f"import {prefix}.{alias.name} as {alias.asname}")
            else:
                # `import src.features` binds `src` with its submodule loaded
                top = alias.name.split(".")[0]
                if "." in alias.name:
                    statements.append(f"import {prefix}.{alias.name}")
                statements.append(f"from {prefix} import {top}")
        return "; ".join(statements)
    return None


def _imported_tops(file: Path) -> set[str]:
    try:
        tree = ast.parse(file.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, OSError):
        return set()
    tops: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            tops |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            tops.add(node.module.split(".")[0])
    return tops
