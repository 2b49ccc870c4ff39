"""nbprod in any notebook front end (classic Notebook, VS Code, JupyterLab, ...):

    from nbprod.widgets import Panel
    Panel()

check, sweep with live progress, the runs table and publish, as ipywidgets. A thin shell
like the CLI and the REST routes: the tabs call the same library functions
(``analyze``, ``JobManager``, ``ranked_runs``, ``parse_axis``) and show their JSON.
"""

from __future__ import annotations

try:
    import ipywidgets  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError("nbprod's panel needs ipywidgets: pip install 'ipywidgets>=8.1'") from error

from nbprod.widgets.panel import Panel, current_notebook

__all__ = ["Panel", "current_notebook"]
