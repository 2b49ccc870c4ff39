#!/usr/bin/env bash
# Create .venv with nbprod (editable) and its development tools; idempotent.
# Everything is installed with uv through one shared cache (.cache/uv), which the
# tests reuse when they build clean virtual environments for generated packages.
set -euo pipefail
cd "$(dirname "$0")/.."
export UV_CACHE_DIR="${UV_CACHE_DIR:-$PWD/.cache/uv}"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
if [ ! -x .venv/bin/uv ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check uv
fi
.venv/bin/uv pip install --quiet --python .venv/bin/python -e '.[dev]'
