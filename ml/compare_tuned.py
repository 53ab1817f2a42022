"""The fine-tuned rows of ``nerloop compare``.

One architecture (:func:`ml.training.train`) trained on the first N training docs, its checkpoint chosen on the dev
split, scored on the shared test docs and, under ``--limit-llm``, on the whole test set too; its throughput is timed on
a loaded model (loading is not serving). Each trained size is kept in a directory keyed by its data, the dev split, the
guide and the training settings, so that a rerun on the same inputs trains nothing.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from spacy.tokens import Doc

from annotation_guide import Guide
from ml.compare_rows import LATENCY_SAMPLE, CompareResult, Row, Tracker, add_row, bar, score
from ml.costs import compute_cost, labelling_cost, serving_cost_per_1k_docs
from ml.training import TrainSettings, fingerprint, train
from ml.training.settings import Architecture


def fine_tuned_row(
    result: CompareResult,
    train_docs: list[Doc],
    dev: list[Doc],
    guide: Guide,
    *,
    architecture: Architecture,
    models: Path,
    tracker: Tracker,
) -> None:
    """Train (or reuse) one size and add its row.

    Scores, throughput of batched inference, latency one document at a time, serving, training and labelling costs.
    """
    from ml.model_store import load_model

    options = result.options
    stage = f"train {architecture} on {len(train_docs)} docs"
    settings = options.train_settings.model_copy(update={"architecture": architecture})
    path, trained = _trained(result, train_docs, dev, guide, settings=settings, models=models, tracker=tracker)
    tracker.report(f"score {architecture} {len(train_docs)} docs", 0.95)
    began = time.perf_counter()
    model = load_model(path / trained["version"])
    started = time.perf_counter()  # serving throughput: the model is loaded once, then serves
    everything = model.predict(result.all_test_docs)  # batched, on the whole test set
    rate = len(result.all_test_docs) / max(time.perf_counter() - started, 1e-9)
    spans = [everything[i] for i in result.sample_index]  # the rows' shared sample of the test set
    latencies = []
    for doc in result.test_docs[:LATENCY_SAMPLE]:
        one = time.perf_counter()
        model.predict([doc])
        latencies.append(time.perf_counter() - one)
    per_type = Counter(e.label_ for d in train_docs for e in d.ents)
    labels = sum(per_type.values())
    row = Row(
        f"{architecture} {len(train_docs)} docs",
        "fine-tuned",
        score(result.test_docs, spans, guide, options.seed),
        latencies,
        rate,
        serving_cost_per_1k_docs(rate, options.costs.compute_per_hour),
        trained["seconds"] + time.perf_counter() - began,
        architecture=architecture,
        train_docs=len(train_docs),
        labels=labels,
        labels_per_type={label: per_type.get(label, 0) for label in guide.labels},
        train_seconds=trained["seconds"],
        train_cost=compute_cost(trained["seconds"], options.costs.compute_per_hour),
        labelling_cost=labelling_cost(labels, options.costs),
        dev_f1=trained["dev_f1"],
        full_report=score(result.all_test_docs, everything, guide, options.seed) if result.sampled else None,
    )
    add_row(result, row, spans)
    if result.sampled:
        result.full_predictions[row.name] = everything
    tracker.part_done(stage)


def _trained(
    result: CompareResult,
    train_docs: list[Doc],
    dev: list[Doc],
    guide: Guide,
    *,
    settings: TrainSettings,
    models: Path,
    tracker: Tracker,
) -> tuple[Path, dict[str, Any]]:
    """The model of one size: reused when the same data, dev split, guide and settings were trained before."""
    key = json.dumps([fingerprint(train_docs), fingerprint(dev), guide.sha256, settings.model_dump(mode="json")])
    path = models / f"{settings.architecture}-{len(train_docs)}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    record = path / "trained.json"
    if record.is_file():
        saved: dict[str, Any] = json.loads(record.read_text(encoding="utf-8"))
        if (path / saved["version"]).is_dir():
            result.models_reused += 1
            return path, saved
    name = f"train {settings.architecture} on {len(train_docs)} docs"
    with bar(100, name, result.options.progress) as shown:

        def on_progress(progress: Any) -> None:
            shown.n = round(100 * progress.fraction)
            shown.set_postfix_str(progress.stage)
            tracker.report(name, 0.9 * progress.fraction)

        started = time.perf_counter()
        trained = train(train_docs, dev, guide, settings=settings, output_root=path, on_progress=on_progress)
    saved = {
        "version": trained.version,
        "seconds": time.perf_counter() - started,
        "dev_f1": {label: s.f1 for label, s in trained.dev_report.per_type.items()},
    }
    record.write_text(json.dumps(saved, indent=2), encoding="utf-8")
    result.models_trained += 1
    return path, saved
