"""The ``nbprod`` command line: parses arguments, calls the library, prints results.

The one place where errors become exit codes: 0 success, 1 problems found or a run
failed, 2 usage or file errors. Tracebacks are shown only with ``--debug``. With
``--json`` an error is also printed on stdout as ``{"error": {...}}`` for programs
(background jobs read it).

Each command group lives in a module of its own (``run``, ``package``, ``runs``,
``check``, ``test``, ``ci``, ``monitor``) and imports only ``common``; this module builds the
group from them, so no command module imports it back.
"""

from __future__ import annotations

import sys

import click

from nbprod import __version__
from nbprod.cli.check import check
from nbprod.cli.ci import ci
from nbprod.cli.common import NbprodGroup
from nbprod.cli.monitor import monitor
from nbprod.cli.package import extract, publish
from nbprod.cli.run import run
from nbprod.cli.runs import runs
from nbprod.cli.test import test

# Start-up: nbformat (imported by the commands that need it) imports jsonschema, which
# imports every optional format checker it finds; rfc3987-syntax builds some 35 Earley
# parsers at import (about a second), for the "iri" formats no notebook schema uses. A
# CLI process is nbprod's own, so it goes without that checker (jsonschema treats it as
# optional); a Jupyter server or a kernel that imports nbprod keeps it.
# None in sys.modules is Python's documented "do not import this" marker, which
# typeshed's dict[str, ModuleType] does not allow: hence the one ignore.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]


@click.group(cls=NbprodGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nbprod")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """From a tagged Jupyter notebook to a tested package that predicts what it predicted."""
    ctx.obj = {"debug": debug}


for command in (run, extract, publish, runs, check, test, ci, monitor):
    main.add_command(command)

if __name__ == "__main__":
    main()
