"""Generate the package source of a notebook run (see ``generate.extract``)."""

from nbprod.extract.generate import extract

__all__ = ["extract"]
