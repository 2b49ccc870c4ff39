"""What every command module of the CLI shares: the consoles (``out`` for results,
``err`` for messages), the ``--json`` flag, and ``NbprodGroup``, the one place where
an ``NbprodError`` becomes a message and an exit code (and, with ``--json``, an
``{"error": ...}`` object on stdout).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from nbprod.exceptions import NbprodError

# Piped output is read by people and scripts alike: do not cut tables at 80 columns.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class NbprodGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NbprodError as error:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            if ctx.obj and ctx.obj.get("json"):
                click.echo(json.dumps({"error": error.to_json()}, default=str))
            err.print(f"[bold red]error:[/] {escape(str(error))}")
            ctx.exit(error.exit_code)


def _remember_json(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.ensure_object(dict)["json"] = True
    return value


Decorated = TypeVar("Decorated", bound=Callable[..., Any])


def json_flag(help: str) -> Callable[[Decorated], Decorated]:
    """``--json``: the result as JSON on stdout, and errors too (see NbprodGroup)."""
    return click.option("--json", "as_json", is_flag=True, help=help, callback=_remember_json)
