#!/usr/bin/env bash
# The main job: install what is missing, then run the whole loop on embedded defaults with `nerloop up`
# (SQLite, the machine's Redis, a local llama.cpp server, Label Studio in its own venv, one Celery worker per
# queue group). It prints the Label Studio login and API token once all answer. Ctrl-C stops it: the workers
# first (they finish their jobs, up to --stop-timeout; a second Ctrl-C cancels them, their jobs go back to the queue).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/install-label-studio.sh
exec .venv/bin/nerloop up "$@"
