"""nbprod: from a tagged notebook to a tested package that predicts what the notebook did."""

__version__ = "0.1.0"
