"""``python -m nbprod``: the command line, as background jobs start it."""

from .cli import main

main(prog_name="nbprod")
