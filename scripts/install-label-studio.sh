#!/usr/bin/env bash
# Label Studio 1.23.2 in its own virtual environment (.venv-ls): it pins Django, redis<5.3 and more,
# which would clash with nerloop's own dependencies. nerloop talks to it over HTTP only.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${NERLOOP_PYTHON:-python3}
[ -x .venv-ls/bin/python ] || "$python" -m venv .venv-ls
.venv-ls/bin/pip install --quiet --disable-pip-version-check label-studio==1.23.2
echo "installed: .venv-ls/bin/label-studio"
