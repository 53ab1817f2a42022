#!/usr/bin/env bash
# Install (if needed) and run every check: ruff, mypy, import-linter (layers), then the test suite.
# Needs ../shared/data beside the checkout (the corpora) and the machine's PostgreSQL and Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/install-label-studio.sh   # the e2e tests start a real Label Studio from .venv-ls
echo "== ruff";          .venv/bin/ruff check .
echo "== mypy";          .venv/bin/mypy
echo "== import-linter"; .venv/bin/lint-imports
echo "== pytest"
# pytest exits 5 when it collects no test: set -e makes that a failure, as it must be.
.venv/bin/pytest -q --durations=40 "$@"   # the 40 slowest, to keep the suite well under 30 min
