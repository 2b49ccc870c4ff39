"""nbprod: from a tagged notebook to a tested package that predicts what the notebook did."""

from __future__ import annotations

import sys

__version__ = "0.1.0"


def log_metric(name: str, value: float) -> float:
    """Record a metric of the current run, from any cell; returns ``value``.

    Inside ``nbprod run`` the value is stored with the run (and can rank a sweep);
    anywhere else, e.g. the notebook run by hand in Jupyter, it does nothing.
    """
    recorder = getattr(sys.modules.get("_nbprod_capture"), "ACTIVE", None)
    if recorder is not None:
        recorder.log_metric(name, value)
    return value


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where JupyterLab finds the prebuilt extension (``jupyter labextension develop .``)."""
    return [{"src": "labextension", "dest": "nbprod"}]
