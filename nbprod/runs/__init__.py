"""What a run leaves behind: its record and folder (``records``) and the SQLite index of
all runs of a notebook (``store``: list, compare, best:METRIC).

One package so that the record and the store it is indexed in cannot import each other
in a circle: ``store`` imports ``records``, never the other way. The lowest stage:
execution writes runs, extraction and publishing read them.
"""
