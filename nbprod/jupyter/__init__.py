"""nbprod's jupyter-server extension: the REST API under ``<base_url>nbprod/``.

Enabled by ``jupyter-config/jupyter_server_config.d/nbprod.json``, which
``pip install nbprod`` puts in ``etc/jupyter``. The routes are in ``handlers.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jupyter_server.serverapp import ServerApp


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    return [{"module": "nbprod.jupyter"}]


def _load_jupyter_server_extension(serverapp: ServerApp) -> None:
    from nbprod.jupyter.handlers import setup_handlers

    setup_handlers(serverapp.web_app, serverapp.root_dir)
    serverapp.log.info("nbprod: REST API at %snbprod/", serverapp.base_url)
