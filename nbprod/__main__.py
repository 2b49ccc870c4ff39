"""``python -m nbprod``: the command line, as background jobs start it."""

from nbprod.cli import main

main(prog_name="nbprod")
