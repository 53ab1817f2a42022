#!/usr/bin/env bash
# Create .venv at the repository root and install nerloop with its pinned dependencies.
# Safe to re-run: an existing .venv is reused and only what is missing gets installed.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${NERLOOP_PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $($python --version)"
  "$python" -m venv .venv
fi
# torch first, from its CPU wheel: through a resolver it would pull a multi-GB CUDA build.
.venv/bin/pip install --quiet --disable-pip-version-check torch==2.13.0
.venv/bin/pip install --quiet --disable-pip-version-check -e ".[dev]"
echo "installed: $(.venv/bin/nerloop --help >/dev/null && echo .venv/bin/nerloop)"
