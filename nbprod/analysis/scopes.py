"""Python scope rules for one cell: which names it reads, defines, deletes and mutates.

Module-level statements are walked in evaluation order, so ``x = x + 1`` reads ``x``
before defining it and ``for row in rows: use(row)`` does not read ``row``. Function
and class bodies, lambdas and comprehensions get their own scopes as in CPython:
what a function reads from module globals is only read when it is called, so it is
kept apart (``lazy``) and charged to whoever calls the function.
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

BUILTINS = frozenset(dir(builtins)) | {
    # names IPython puts in every user namespace
    "get_ipython",
    "display",
    "In",
    "Out",
    "_",
    "__",
    "___",
    "exit",
    "quit",
    "__name__",
    "__file__",
}

_FUNCTION = ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
# Methods that change the object they are called on: fitting an estimator, filling a
# container. ``obj.fit(X)`` in a train cell makes ``obj`` something training produced.
MUTATING_METHODS = frozenset(
    {
        "train",
        "learn",
        "update",
        "append",
        "extend",
        "insert",
        "add",
        "setdefault",
        "pop",
        "popitem",
        "remove",
        "discard",
        "clear",
        "sort",
        "reverse",
        "set_params",
        "set_output",
        "load_model",
        "load_state_dict",
        "compile",
    }
)


def is_mutating_method(name: str) -> bool:
    """``fit``, ``fit_transform``, ``partial_fit``... or one of ``MUTATING_METHODS``."""
    return name.startswith(("fit", "partial_fit")) or name in MUTATING_METHODS


_COMPREHENSION = ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp


@dataclass(frozen=True)
class Import:
    """One name bound by an import statement, with the statement that binds it."""

    name: str
    statement: str
    module: str  # top-level distribution module, e.g. "sklearn"
    line: int
    star: bool = False


@dataclass
class Statement:
    """Scope facts about one top-level statement of a cell."""

    node: ast.stmt
    reads: dict[str, int] = field(default_factory=dict)  # read before defined here → first line
    writes: dict[str, int] = field(default_factory=dict)
    deletes: set[str] = field(default_factory=set)
    mutates: dict[str, int] = field(default_factory=dict)
    imports: list[Import] = field(default_factory=list)
    # def/class (or name = lambda) defined here → module globals it reads when called
    lazy: dict[str, set[str]] = field(default_factory=dict)
    # names written as module globals by functions defined here (`global x; x = ...`)
    global_writes: dict[str, set[str]] = field(default_factory=dict)

    @property
    def line(self) -> int:
        return self.node.lineno


def scan_statements(nodes: Iterable[ast.stmt]) -> list[Statement]:
    """Scope facts for each top-level statement, in order."""
    return [_ModuleScan.scan(node) for node in nodes]


class _ModuleScan(ast.NodeVisitor):
    """Walks one module-level statement in evaluation order."""

    def __init__(self, node: ast.stmt) -> None:
        self.result = Statement(node=node)

    @classmethod
    def scan(cls, node: ast.stmt) -> Statement:
        visitor = cls(node)
        visitor.visit(node)
        return visitor.result

    # -- names -------------------------------------------------------------------
    def read(self, name: str, line: int) -> None:
        if name not in self.result.writes and name not in self.result.reads:
            self.result.reads[name] = line

    def write(self, name: str, line: int) -> None:
        self.result.writes[name] = line
        self.result.deletes.discard(name)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self.read(node.id, node.lineno)
        elif isinstance(node.ctx, ast.Store):
            self.write(node.id, node.lineno)
        else:
            self.read(node.id, node.lineno)
            self.result.writes.pop(node.id, None)
            self.result.deletes.add(node.id)

    def _mutation(self, node: ast.Attribute | ast.Subscript) -> None:
        if not isinstance(node.ctx, ast.Load):
            base = _base_name(node)
            if base is not None:
                self.result.mutates.setdefault(base, node.lineno)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self._mutation(node)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        in_place = any(
            k.arg == "inplace" and isinstance(k.value, ast.Constant) and k.value.value is True
            for k in node.keywords
        )
        if isinstance(func, ast.Attribute) and (is_mutating_method(func.attr) or in_place):
            base = _base_name(func.value)
            if base is not None:
                self.result.mutates.setdefault(base, node.lineno)
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        self._mutation(node)
        self.generic_visit(node)

    # -- evaluation order ------------------------------------------------------------
    def visit_Assign(self, node: ast.Assign) -> None:
        if isinstance(node.value, ast.Lambda):
            for expr in _defaults(node.value.args):
                self.visit(expr)  # defaults are evaluated when the lambda is created
            frees = free_names(node.value)
            for target in node.targets:
                for name in _target_names(target):
                    self.result.lazy[name] = frees
        else:
            self.visit(node.value)
        for target in node.targets:
            self.visit(target)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
        self.visit(node.annotation)
        if node.value is not None or not isinstance(node.target, ast.Name):
            self.visit(node.target)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if isinstance(node.target, ast.Name):
            self.read(node.target.id, node.lineno)
            self.visit(node.value)
            self.write(node.target.id, node.lineno)
        else:
            self.visit(node.value)
            self.visit(node.target)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        self.visit(node.target)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        self.visit(node.target)
        for child in [*node.body, *node.orelse]:
            self.visit(child)

    visit_AsyncFor = visit_For

    def visit_With(self, node: ast.With | ast.AsyncWith) -> None:
        for item in node.items:
            self.visit(item.context_expr)
            if item.optional_vars is not None:
                self.visit(item.optional_vars)
        for child in node.body:
            self.visit(child)

    visit_AsyncWith = visit_With

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is not None:
            self.visit(node.type)
        if node.name:
            self.write(node.name, node.lineno)
        for child in node.body:
            self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            bound = alias.asname or alias.name.split(".")[0]
            text = f"import {alias.name}" + (f" as {alias.asname}" if alias.asname else "")
            self._import(bound, text, alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = "." * node.level + (node.module or "")
        for alias in node.names:
            if alias.name == "*":
                self.result.imports.append(
                    Import("*", f"from {module} import *", module.split(".")[0], node.lineno, True)
                )
                continue
            bound = alias.asname or alias.name
            text = f"from {module} import {alias.name}" + (
                f" as {alias.asname}" if alias.asname else ""
            )
            self._import(bound, text, module.lstrip(".").split(".")[0], node.lineno)

    def _import(self, bound: str, text: str, module: str, line: int) -> None:
        self.result.imports.append(Import(bound, text, module.split(".")[0], line))
        self.write(bound, line)

    def visit_Global(self, node: ast.Global) -> None:
        """``global`` at module level changes nothing."""

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:
        """``nonlocal`` at module level is a syntax error; nothing to record."""

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        if node.pattern is not None:
            self.visit(node.pattern)
        if node.name:
            self.write(node.name, node.lineno)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name:
            self.write(node.name, node.lineno)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        for child in [*node.keys, *node.patterns]:
            self.visit(child)
        if node.rest:
            self.write(node.rest, node.lineno)

    # -- nested scopes -------------------------------------------------------------
    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for expr in [*node.decorator_list, *_defaults(node.args), *_annotations(node)]:
            self.visit(expr)
        self.result.lazy[node.name] = free_names(node)
        writes = global_writes(node)
        if writes:
            self.result.global_writes[node.name] = writes
        self.write(node.name, node.lineno)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        for expr in _defaults(node.args):
            self.visit(expr)
        for name in free_names(node):
            self.read(name, node.lineno)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for expr in [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]:
            self.visit(expr)
        now, later = _class_body_names(node)
        for name in now:
            self.read(name, node.lineno)
        self.result.lazy[node.name] = later
        self.write(node.name, node.lineno)

    def _comprehension(
        self, node: ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp
    ) -> None:
        # The first iterable is evaluated in the enclosing scope; the rest inside.
        self.visit(node.generators[0].iter)
        for name in sorted(free_names(node)):
            self.read(name, node.lineno)
        for name in _walrus_targets(node):
            self.write(name, node.lineno)

    def visit_ListComp(self, node: ast.ListComp) -> None:
        self._comprehension(node)

    def visit_SetComp(self, node: ast.SetComp) -> None:
        self._comprehension(node)

    def visit_GeneratorExp(self, node: ast.GeneratorExp) -> None:
        self._comprehension(node)

    def visit_DictComp(self, node: ast.DictComp) -> None:
        self._comprehension(node)


# ---------------------------------------------------------------------------------
# Nested scopes: what a function, lambda, class or comprehension reads from outside.


def free_names(node: ast.AST) -> set[str]:
    """Names a scope reads but does not bind: resolved in enclosing scopes / globals.

    For a comprehension the first iterable is excluded (the caller evaluates it).
    """
    bound, declared_global = _bindings(node)
    loads = set()
    for child in _scope_children(node):
        if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Load | ast.Del):
            loads.add(child.id)
        elif isinstance(child, ast.AugAssign) and isinstance(child.target, ast.Name):
            loads.add(child.target.id)
        elif isinstance(child, _FUNCTION | _COMPREHENSION):
            loads |= free_names(child)
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                for expr in [*child.decorator_list, *_defaults(child.args), *_annotations(child)]:
                    loads |= _expression_loads(expr)
            elif isinstance(child, ast.Lambda):
                for expr in _defaults(child.args):
                    loads |= _expression_loads(expr)
            else:
                loads |= _expression_loads(child.generators[0].iter)
        elif isinstance(child, ast.ClassDef):
            now, later = _class_body_names(child)
            loads |= now | later
    return (loads - bound) | (loads & declared_global)


def global_writes(node: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    """Module globals a function assigns through ``global`` declarations (nested too)."""
    declared: set[str] = set()
    stored: set[str] = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Global):
            declared.update(child.names)
        elif isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store | ast.Del):
            stored.add(child.id)
    return declared & stored


def _expression_loads(expr: ast.AST) -> set[str]:
    scan = _ModuleScan(ast.Pass())  # a scratch statement: only the reads of ``expr`` matter
    scan.visit(expr)
    return set(scan.result.reads)


def _class_body_names(node: ast.ClassDef) -> tuple[set[str], set[str]]:
    """(names the class body reads while it runs, names its methods read when called)."""
    now: set[str] = set()
    later: set[str] = set()
    bound: set[str] = set()
    for statement in node.body:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
            for expr in [*statement.decorator_list, *_defaults(statement.args)]:
                now |= _expression_loads(expr) - bound
            later |= free_names(statement)
            bound.add(statement.name)
            continue
        scan = _ModuleScan.scan(statement)
        now |= set(scan.reads) - bound
        for lazy in scan.lazy.values():
            later |= lazy
        bound |= set(scan.writes)
    return now, later


def _bindings(node: ast.AST) -> tuple[set[str], set[str]]:
    """(names bound in this scope, names declared global in it)."""
    bound: set[str] = set()
    declared_global: set[str] = set()
    if isinstance(node, _FUNCTION):
        args = node.args
        for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
            if arg is not None:
                bound.add(arg.arg)
    if isinstance(node, _COMPREHENSION):
        for generator in node.generators:
            bound |= set(_target_names(generator.target))
    for child in _scope_children(node):
        if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store | ast.Del):
            bound.add(child.id)
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(child.name)
        elif isinstance(child, ast.alias):
            if child.name != "*":
                bound.add(child.asname or child.name.split(".")[0])
        elif isinstance(child, ast.ExceptHandler | ast.MatchAs | ast.MatchStar) and child.name:
            bound.add(child.name)
        elif isinstance(child, ast.MatchMapping) and child.rest:
            bound.add(child.rest)
        elif isinstance(child, ast.Global):
            declared_global.update(child.names)
        elif isinstance(child, ast.Nonlocal):
            bound.difference_update(child.names)
    if isinstance(node, _FUNCTION):
        bound |= _walrus_targets(node)
    nonlocal_names = {
        n for c in _scope_children(node) if isinstance(c, ast.Nonlocal) for n in c.names
    }
    return bound - declared_global - nonlocal_names, declared_global


def _scope_children(node: ast.AST) -> Iterator[ast.AST]:
    """Every node inside ``node``'s own scope; nested scopes are yielded, not entered."""
    if isinstance(node, ast.Lambda):
        roots: list[ast.AST] = [node.body]
    elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        roots = list(node.body)
    elif isinstance(node, _COMPREHENSION):
        generators = node.generators
        roots = [generators[0].target, *generators[0].ifs]
        for generator in generators[1:]:
            roots += [generator.iter, generator.target, *generator.ifs]
        if isinstance(node, ast.DictComp):
            roots += [node.key, node.value]
        else:
            roots.append(node.elt)
    else:
        roots = list(ast.iter_child_nodes(node))
    stack = list(reversed(roots))
    while stack:
        child = stack.pop()
        yield child
        if isinstance(child, _FUNCTION | _COMPREHENSION | ast.ClassDef):
            continue
        stack.extend(reversed(list(ast.iter_child_nodes(child))))


def _walrus_targets(node: ast.AST) -> set[str]:
    """Names bound by ``:=`` inside comprehensions nested in ``node`` (they leak out)."""
    names: set[str] = set()
    for child in _scope_children(node):
        if isinstance(child, ast.NamedExpr) and isinstance(child.target, ast.Name):
            if isinstance(node, _COMPREHENSION):
                names.add(child.target.id)
        elif isinstance(child, _COMPREHENSION):
            names |= _walrus_targets(child)
    if isinstance(node, _COMPREHENSION):
        for generator in node.generators[1:]:
            for child in ast.walk(generator.iter):
                if isinstance(child, ast.NamedExpr) and isinstance(child.target, ast.Name):
                    names.add(child.target.id)
    return names


def _defaults(args: ast.arguments) -> list[ast.expr]:
    return [*args.defaults, *(d for d in args.kw_defaults if d is not None)]


def _annotations(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.expr]:
    args = node.args
    every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
    found = [a.annotation for a in every if a is not None and a.annotation is not None]
    return found + ([node.returns] if node.returns is not None else [])


def _target_names(target: ast.AST) -> list[str]:
    return [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]


def _base_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute | ast.Subscript | ast.Starred):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None
