"""The cell roles: tags in a cell's ``metadata.tags`` (PRODUCT.md §1).

A module of its own, free of imports, so that deciding whether a notebook uses
nbprod (``nbprod.testing.discover``) does not import nbformat.
"""

ROLES = ("parameters", "data", "features", "train", "metrics", "inference", "test")
TRAINING_ROLES = ("parameters", "data", "features", "train", "metrics")
