#!/usr/bin/env bash
# The four-corpus study of issue #13: `nerloop compare` on the CrossNER ai, politics and science domains and on
# CoNLL-2003, with Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF) served by llama.cpp as the LLM.
#
#   bash docs/compare/run.sh [SHOTS] [CORPUS ...]       e.g. bash docs/compare/run.sh 0 ai politics science
#                                                         then bash docs/compare/run.sh 0,5   (every corpus)
#   bash docs/compare/run.sh none [CORPUS ...]          the fine-tuned rows alone, on the whole test set (no LLM):
#                                                         docs/compare/<corpus>/fine-tuned/report.*
#
# Resumable across sessions: each corpus's LLM answers are kept in docs/compare/<corpus>/cache/llm/ (the model's
# outputs and token counts only, in files named by a hash of the request: no corpus text), copied into the work
# folder before a run and back after it (and by `sync` below while it runs), so a rerun sends only the requests
# that have no answer yet. Trained sizes are kept in the work folder only (a later session retrains them: minutes).
# The finished report (report.md, report.json; no corpus text) is copied to docs/compare/<corpus>/ and its HTML page
# is rendered there from report.json (docs/compare/render.py; several MB of inlined plotly: built, not committed).
#
# Settings (environment): GGUF (the model file; fetched by bench/llm_preannotation.py when missing), WORK (the
# work folder, outside the repository: models and predictions hold corpus text), DATA (the corpora), LIMIT_LLM
# (test sentences the LLM answers: at least 200), NICE (nice level), TIMEOUT (seconds per corpus).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
GGUF=${GGUF:-/work/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf}
WORK=${WORK:-/work/compare-study}
DATA=${DATA:-$ROOT/../shared/data}
LIMIT_LLM=${LIMIT_LLM:-200}
NICE=${NICE:-19}
TIMEOUT=${TIMEOUT:-36000}
SHOTS=${1:-0,5}
shift || true
CORPORA=${*:-ai politics science conll2003}

[ -f "$GGUF" ] || .venv/bin/python bench/llm_preannotation.py --fetch-only --model "$GGUF"
mkdir -p "$WORK"

sync_cache() {  # from the work folder into the repository (answers only: never a partial file)
    local corpus=$1
    mkdir -p "docs/compare/$corpus/cache/llm"
    rsync -a --include='*/' --include='*.json' --exclude='*' "$WORK/$corpus/cache/llm/" "docs/compare/$corpus/cache/llm/" || true
}

for corpus in $CORPORA; do
    case $corpus in
        ai) sizes=25,50,100,200,all ;;
        politics | science) sizes=50,100,200,400,all ;;
        conll2003) sizes=50,100,200,500,1000,2000,all ;;
        *) echo "unknown corpus $corpus (ai, politics, science, conll2003)" >&2; exit 2 ;;
    esac
    out=$WORK/$corpus
    mkdir -p "$out/cache/llm" "$out/data"
    if [ "$corpus" = conll2003 ]; then
        guide=annotation_guide/guides/conll2003.yaml
        train=$DATA/conll2003/train.txt
        test=$DATA/conll2003/test.txt
    else
        # CrossNER's train split is 100-200 sentences: the training file is train + dev (the last 20% of it, from
        # CrossNER's dev, chooses checkpoints and the router's types); test stays CrossNER's test split
        guide=annotation_guide/guides/crossner_$corpus.yaml
        train=$out/data/train+dev.txt
        cat "$DATA/crossner/$corpus/train.txt" "$DATA/crossner/$corpus/dev.txt" > "$train"  # each ends with a blank line
        test=$DATA/crossner/$corpus/test.txt
    fi
    if [ -d "docs/compare/$corpus/cache/llm" ]; then  # answers of earlier sessions
        rsync -a --ignore-existing "docs/compare/$corpus/cache/llm/" "$out/cache/llm/"
    fi
    if [ "$SHOTS" = none ]; then  # the fine-tuned rows alone, on the whole test set: a partial report, no LLM
        llm=(--limit-llm 0)
        reports=docs/compare/$corpus/fine-tuned
    else
        llm=(--gguf "$GGUF" --shots "$SHOTS" --strategies random,similar --limit-llm "$LIMIT_LLM" --llm-timeout 1800)
        reports=docs/compare/$corpus
    fi
    echo "[$(date -u +%H:%M:%S)] $corpus: shots $SHOTS, sizes $sizes, LLM on $LIMIT_LLM test sentences" >&2
    status=0
    # the same --out for both: the trained sizes (keyed by data and settings) are reused by the other
    nice -n "$NICE" timeout "$TIMEOUT" .venv/bin/nerloop compare --guide "$guide" --train "$train" --test "$test" \
        --out "$out" "${llm[@]}" --sizes "$sizes" --architectures cnn --no-progress || status=$?
    sync_cache "$corpus"
    if [ "$status" -eq 0 ]; then
        mkdir -p "$reports"
        cp "$out/report.md" "$out/report.json" "$reports/"
        .venv/bin/python docs/compare/render.py "$corpus"
        echo "[$(date -u +%H:%M:%S)] $corpus: done, report in $reports/" >&2
    else
        echo "[$(date -u +%H:%M:%S)] $corpus: stopped ($status); rerun to continue" >&2
    fi
done
