"""``nerloop compare`` end to end on a tiny CoNLL slice.

A real llama.cpp server with the tiny SmolLM2 GGUF, real CNN trainings; the report's figures are recomputed here from
the predictions the run saved (the fine-tuned rows' on the whole test set too, beside the LLM's --limit-llm sample), and
a rerun reuses the cached answers and the trained sizes.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from spacy.language import Language
from typer.testing import CliRunner

from annotation_guide import Guide
from ml.converters import load_docs
from ml.costs import CostSettings, break_even_volume, labelling_cost, overtake_labels
from ml.evaluation import score_spans
from ml.prediction import ScoredSpan
from workers.cli import app

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
TRAIN_SENTENCES, TEST_SENTENCES, LIMIT_LLM = 50, 6, 3


def _slice(source: Path, target: Path, sentences: int) -> Path:
    """The first ``sentences`` blank-line-separated sentences of a CoNLL file."""
    blocks = source.read_text(encoding="utf-8").split("\n\n")[:sentences]
    target.write_text("\n\n".join(blocks) + "\n\n", encoding="utf-8")
    return target


def _run(args: list[str]) -> dict[str, Any]:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = Path(args[args.index("--out") + 1])
    data: dict[str, Any] = json.loads((out / "report.json").read_text(encoding="utf-8"))
    return data


def test_compare_reports_figures_recomputable_from_its_predictions_and_resumes(
    tmp_path: Path, shared_data: Path, llama_server: str, conll_guide: Guide, blank_nlp: Language
) -> None:
    train = _slice(shared_data / "conll2003" / "train.txt", tmp_path / "train.txt", TRAIN_SENTENCES)
    test = _slice(shared_data / "conll2003" / "test.txt", tmp_path / "test.txt", TEST_SENTENCES)
    out = tmp_path / "out"
    args = ["compare", "--guide", str(ROOT / "annotation_guide" / "guides" / "conll2003.yaml")]
    args += ["--train", str(train), "--test", str(test), "--out", str(out), "--llm-url", llama_server]
    args += ["--shots", "0,1", "--strategies", "similar", "--sizes", "20,40", "--architectures", "cnn"]
    args += ["--limit-llm", str(LIMIT_LLM), "--max-steps", "40", "--max-tokens", "64", "--no-progress"]
    args += ["--llm-timeout", "600"]  # a loaded machine: a request that times out is re-sent by the rerun
    first = _run(args)

    names = [row["name"] for row in first["rows"]]
    assert names == [
        "LLM zero-shot",
        "LLM similar 1-shot",
        "cnn 20 docs",
        "cnn 40 docs",
        "router cnn + LLM similar 1-shot",
    ]
    assert (first["llm_requests"], first["llm_cached"], first["models_trained"]) == (2 * LIMIT_LLM, 0, 2)
    for name in ("report.md", "report.html"):
        assert (out / name).stat().st_size > 0
    html = (out / "report.html").read_text(encoding="utf-8")
    # plotly.js inlined: no network
    assert "<script" in html
    assert 'src="http' not in html
    assert "seconds_per_label" in (out / "report.md").read_text(encoding="utf-8")  # the rates are printed

    # recompute every row's scores from the saved predictions and the test file (the rows share --limit-llm's
    # seeded random sample of it, its indices in report.json)
    everything = [d for d in load_docs(test, blank_nlp, labels=conll_guide.labels).docs if d.text.strip()]
    indices = first["test_sample"]["indices"]
    gold = [everything[i] for i in indices]
    assert first["test_docs"] == len(gold) == LIMIT_LLM
    for row in first["rows"]:
        lines = (out / "predictions" / f"{row['slug']}.jsonl").read_text(encoding="utf-8").splitlines()
        saved = [json.loads(line) for line in lines]
        assert [s["text"] for s in saved] == [d.text for d in gold]
        spans = [[ScoredSpan(a, b, label, s["text"][a:b], 0.5) for a, b, label in s["spans"]] for s in saved]
        report = score_spans(gold, spans, labels=conll_guide.labels, target_f1=conll_guide.targets.f1)
        assert row["micro_f1"] == pytest.approx(report.micro.f1)
        assert row["partial_micro_f1"] == pytest.approx(report.partial_micro_f1)
        for label, score in report.per_type.items():
            assert row["per_type"][label]["f1"] == pytest.approx(score.f1)
            assert row["per_type"][label]["support"] == score.support

    # under --limit-llm the fine-tuned rows are also scored on the whole test set, from their .full predictions
    assert first["all_test_docs"] == len(everything) > LIMIT_LLM
    for row in first["rows"]:
        full = out / "predictions" / f"{row['slug']}.full.jsonl"
        if row["kind"] != "fine-tuned":
            assert row["full_test"] is None
            assert not full.exists()
            continue
        saved = [json.loads(line) for line in full.read_text(encoding="utf-8").splitlines()]
        assert [s["text"] for s in saved] == [d.text for d in everything]
        spans = [[ScoredSpan(a, b, label, s["text"][a:b], 0.5) for a, b, label in s["spans"]] for s in saved]
        report = score_spans(everything, spans, labels=conll_guide.labels, target_f1=conll_guide.targets.f1)
        assert row["full_test"]["micro_f1"] == pytest.approx(report.micro.f1)
        assert {label: t["support"] for label, t in row["full_test"]["per_type"].items()} == {
            label: score.support for label, score in report.per_type.items()
        }
        on_sample = (out / "predictions" / f"{row['slug']}.jsonl").read_text(encoding="utf-8").splitlines()
        assert [saved[i]["spans"] for i in indices] == [json.loads(line)["spans"] for line in on_sample]
    assert "whole test set" in (out / "report.md").read_text(encoding="utf-8")

    # labels and their cost from the training file: the pool is what precedes the dev split at its end
    costs = CostSettings()
    train_docs = [d for d in load_docs(train, blank_nlp, labels=conll_guide.labels).docs if d.text.strip()]
    assert first["train_pool_docs"] + first["dev_docs"] == len(train_docs)
    rows = {row["name"]: row for row in first["rows"]}
    for size in (20, 40):
        row = rows[f"cnn {size} docs"]
        per_type = Counter(e.label_ for d in train_docs[:size] for e in d.ents)
        assert row["labels"] == sum(per_type.values())
        assert row["labelling_cost"] == pytest.approx(labelling_cost(row["labels"], costs))
        assert row["train_seconds"] > 0
        assert row["docs_per_second"] > 0
    for row in first["rows"][:2]:  # LLM: token prices of the measured tokens
        tokens = row["prompt_tokens_per_doc"] * 0.003 + row["completion_tokens_per_doc"] * 0.006
        assert row["cost_per_1k_docs"] == pytest.approx(tokens)
        assert row["prompt_tokens_per_doc"] > 0

    # break-even and overtake from the rows, against the LLM row of best micro F1
    llm = max(first["rows"][:2], key=lambda r: r["micro_f1"])
    for entry in first["break_even"]:
        row = rows[entry["row"]]
        assert entry["llm_row"] == llm["name"]
        expected = break_even_volume(
            llm_per_doc=llm["cost_per_1k_docs"] / 1000,
            fine_tuned_fixed=row["labelling_cost"] + row["train_cost"],
            fine_tuned_per_doc=row["cost_per_1k_docs"] / 1000,
            llm_f1=llm["micro_f1"],
            fine_tuned_f1=row["micro_f1"],
        )
        assert entry["volume"] == (pytest.approx(expected) if expected is not None else None)
    for label, labels_at in first["overtake_labels"]["cnn"].items():
        points = [rows[f"cnn {n} docs"] for n in (20, 40)]
        curve = [(r["labels_per_type"][label], r["per_type"][label]["f1"]) for r in points]
        expected = overtake_labels(curve, llm["per_type"][label]["f1"]) if llm["per_type"][label]["support"] else None
        assert labels_at == (pytest.approx(expected) if expected is not None else None)

    # a rerun into the same folder asks the LLM nothing and trains nothing, and reports the same scores
    second = _run(args)
    assert (second["llm_requests"], second["llm_cached"]) == (0, 2 * LIMIT_LLM)
    assert (second["models_trained"], second["models_reused"]) == (0, 2)
    assert [r["micro_f1"] for r in second["rows"]] == [r["micro_f1"] for r in first["rows"]]


def test_sigterm_stops_the_llm_server_compare_started(tmp_path: Path, shared_data: Path) -> None:
    """``nerloop compare --gguf`` stopped with SIGTERM stops the llama.cpp server it started (none left orphaned)."""
    import os
    import signal
    import subprocess
    import sys

    from backend.cli import default_gguf
    from tests.conftest import alive, child_pids, command_line
    from tests.integration.conftest import wait_until

    train = _slice(shared_data / "conll2003" / "train.txt", tmp_path / "train.txt", TRAIN_SENTENCES)
    test = _slice(shared_data / "conll2003" / "test.txt", tmp_path / "test.txt", TEST_SENTENCES)
    args = ["compare", "--guide", str(ROOT / "annotation_guide" / "guides" / "conll2003.yaml")]
    args += ["--train", str(train), "--test", str(test), "--out", str(tmp_path / "out"), "--gguf", default_gguf()]
    args += ["--shots", "0", "--sizes", "20", "--architectures", "cnn", "--no-progress", "--max-steps", "40"]
    nerloop = Path(sys.executable).with_name("nerloop")
    compare = subprocess.Popen([str(nerloop), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    served: list[int] = []
    try:

        def server_started() -> bool:
            """Compare's child serving the GGUF (``nerloop llm serve``, which execs llama.cpp's server)."""
            for child in child_pids(compare.pid):
                command = command_line(child)
                if "llama_cpp.server" in command or " llm serve " in command:
                    served.append(child)
            return bool(served)

        # the server starts at the first LLM request
        wait_until(server_started, timeout=600, message="compare never started its LLM server")
        compare.send_signal(signal.SIGTERM)
        output, _ = compare.communicate(timeout=120)
        assert compare.returncode == 130, output.decode(errors="replace")[-2000:]  # an interrupt, cleaned up
        wait_until(lambda: not alive(served[0]), timeout=60, message="the LLM server outlived compare")
    finally:
        for pid in [*served, compare.pid]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        compare.wait(timeout=30)
