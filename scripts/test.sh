#!/usr/bin/env bash
# The project's whole test suite on a fresh machine: set-up, lint, types, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export UV_CACHE_DIR="${UV_CACHE_DIR:-$PWD/.cache/uv}"
bash scripts/setup.sh
echo "test.sh: set-up done in ${SECONDS} s" >&2
.venv/bin/ruff check nbprod tests bench example_notebooks corpus
.venv/bin/ruff format --check nbprod tests bench example_notebooks corpus
.venv/bin/mypy
# The layers of nbprod/ and no import cycle ([tool.importlinter] in pyproject.toml).
.venv/bin/lint-imports --no-cache
# pytest exits 5 when it collects nothing: that is a failure here too. Two workers, each
# test file on one of them (its module fixtures are built once): 12 minutes, not 22.
.venv/bin/python -m pytest -p no:cacheprovider -n "${NBPROD_TEST_WORKERS:-2}" --dist loadfile \
    --durations=15 "$@"
# The example notebooks as tests, through nbprod's own pytest plugin (two workers).
.venv/bin/python -m pytest -p no:cacheprovider --nbprod -n 2 -v example_notebooks
echo "test.sh: all passed in ${SECONDS} s" >&2
