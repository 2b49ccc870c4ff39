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
# The JupyterLab extension is built below, not inside this (silent, isolated) install.
SKIP_JUPYTER_BUILDER=1 .venv/bin/uv pip install --quiet --python .venv/bin/python -e '.[dev]'

# Tools the JupyterLab extension's build and browser tests need: Node (to build it) and
# Debian's Chromium (Playwright drives it; `playwright install` is never used). Installed
# with apt-get where missing and we are root; otherwise say what is missing.
missing=()
command -v node >/dev/null || missing+=(nodejs)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "setup: apt-get install ${missing[*]}" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    else
        echo "setup: missing ${missing[*]} (install with apt-get as root);" \
            "the JupyterLab extension cannot be built or browser-tested without them" >&2
    fi
fi

# labextension/ (TypeScript) → nbprod/labextension: built with the Node packages pinned
# by yarn.lock (kept in labextension/node_modules) when missing or older than its sources.
export PATH="$PWD/.venv/bin:$PATH"  # jlpm and jupyter-builder come with jupyterlab
built=nbprod/labextension/static/style.js
sources=(labextension/src labextension/style labextension/package.json labextension/yarn.lock
    labextension/tsconfig.json)
if [ ! -f "$built" ] || [ -n "$(find "${sources[@]}" -newer "$built" -print -quit)" ]; then
    echo "setup: building the JupyterLab extension (labextension/)" >&2
    log=$(mktemp)
    if ! (cd labextension && jlpm install --immutable && jlpm build:prod) >"$log" 2>&1; then
        cat "$log" >&2
        echo "setup: the JupyterLab extension did not build (output above)" >&2
        exit 1
    fi
    rm -f "$log"
fi
# The editable install copies the built extension into .venv/share/jupyter/labextensions,
# where `jupyter lab` finds it: copy again whenever the build changed.
if ! cmp -s nbprod/labextension/package.json .venv/share/jupyter/labextensions/nbprod/package.json
then
    SKIP_JUPYTER_BUILDER=1 .venv/bin/uv pip install --quiet --python .venv/bin/python --no-deps \
        --reinstall-package nbprod -e .
fi
