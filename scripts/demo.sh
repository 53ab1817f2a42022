#!/usr/bin/env bash
# The first milestone's job (the main job is scripts/up.sh): install, then train a spaCy CNN on 500 CoNLL-2003
# sentences with the shipped CoNLL guide, and evaluate it per entity type on the dev split.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${NERLOOP_SHARED_DATA:-../shared/data}/conll2003
[ -f "$data/train.txt" ] || { echo "error: $data/train.txt not found (put ../shared beside the checkout or set NERLOOP_SHARED_DATA)" >&2; exit 2; }
bash scripts/install.sh
out=${NERLOOP_MODELS:-models/conll2003}
.venv/bin/nerloop train --guide annotation_guide/guides/conll2003.yaml --train "$data/train.txt" \
  --dev "$data/dev.txt" --limit 500 --max-steps 1500 --output "$out" | tee /tmp/nerloop-demo-train.txt
model=$(tail -1 /tmp/nerloop-demo-train.txt | sed 's/^model: //')
echo "== evaluation of $model on $data/dev.txt"
.venv/bin/nerloop evaluate --model "$model" --data "$data/dev.txt"
