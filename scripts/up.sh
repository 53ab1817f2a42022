#!/usr/bin/env bash
# The main job: install what is missing, then run the whole loop on embedded defaults with `nerloop up`
# (SQLite, the machine's Redis, a local llama.cpp server, Label Studio in its own venv). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/install-label-studio.sh
exec .venv/bin/nerloop up "$@"
