"""Data generators of the corpus: our own code, never taken from the sdists.

A notebook of ``corpus.toml`` whose data file cannot be shipped (it is downloaded at run
time, or its licence forbids copying it) names one of these functions as ``data``.
``corpus/materialise.py`` calls it with the notebook's materialised folder (the root of
the sdist's layout); it writes the file at the relative path the notebook reads,
generated from a dataset bundled with an installed package. None is needed yet: every
notebook of the corpus reads data that its own sdist ships or its package bundles.
"""

from __future__ import annotations
