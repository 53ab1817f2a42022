"""Benchmark: retrain time and F1, cold start against warm start, as labels grow (200, 1,000, 5,000 by default).

The labels are the first N CoNLL-2003 training sentences, split as a project splits them (task ``i + 1`` of project
1, ``in_dev_split`` with the default 20% dev share), trained with an automatic retrain's settings (CNN,
``NER_RETRAIN_MAX_STEPS`` 2,000 steps, evaluation every 100). Cold: fresh weights, the full budget. Warm: from
the version trained on the previous size's labels (the warm one when there is one, as a chain of retrains is),
with the warm step budget (``ml.training.warm_start``), once per ``--refresh`` (shrink and perturb, each its own
chain). Time is ``ml.training.train`` end to end (training, the
calibration fit and the dev evaluation: what a retrain adds to the snapshot, the serving model's evaluation and
the swap, measured by ``bench/retrain_latency.py``). F1 is exact micro F1 on the project's dev split and on the
CoNLL test split, with a 95% percentile bootstrap interval over test documents, and the paired bootstrap interval
of warm minus cold on the same resamples. The load average (1 min) is read before and after each training.

With ``--gate`` the chain runs as the loop runs it: the held-out tasks are split as a project splits them
(``held_out_role``: dev chooses the checkpoint, test feeds the gate), each warm candidate is compared with the
version that serves on the test half (``ml.promotion.decide_promotion``, the loop's tolerance), and a refused
candidate leaves the serving version in place, so the next retrain starts from it and the F1 that counts is the
served version's (``served_test_f1``, and its paired interval against cold).

A jump of many labels (200 to 1,000) starts cold in the product (more than ``warm_max_new_share`` of the training
docs new): such a "warm" row says "(started cold)"; ``--warm-max-new-share 1`` measures the warm jump anyway.

    .venv/bin/python bench/warm_start.py --seeds 0 1 --warm-max-new-share 1 [--refresh 1:0 0.5:0.01]
    .venv/bin/python bench/warm_start.py --gate --sizes $(seq -s ' ' 800 20 1000) --cold-sizes 800 900 1000 \
        --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import spacy
from spacy.tokens import Doc

from annotation_guide import load_guide
from ml.converters import load_docs
from ml.evaluation import FloatArray, evaluate
from ml.model_store import load_model
from ml.promotion import decide_promotion, held_out_role, in_dev_split
from ml.training import TrainedModel, TrainSettings, train

ROOT = Path(__file__).resolve().parents[1]
ROLES = ("train", "dev", "test")


def _counts(model_path: Path, docs: list[Doc]) -> FloatArray:
    """Per doc: true positives, predicted and gold entities (exact match), for the bootstrap."""
    predictions = load_model(model_path).predict(docs)
    rows = []
    for doc, spans in zip(docs, predictions, strict=True):
        gold = {(e.start_char, e.end_char, e.label_) for e in doc.ents}
        pred = {(s.start, s.end, s.label) for s in spans}
        rows.append((len(gold & pred), len(pred), len(gold)))
    return np.array(rows, dtype=float)


def _f1(counts: FloatArray) -> FloatArray:
    """Micro F1 of each resample: ``counts`` is (..., docs, 3)."""
    tp, pred, gold = counts[..., 0].sum(-1), counts[..., 1].sum(-1), counts[..., 2].sum(-1)
    return np.where(pred + gold > 0, 2 * tp / np.maximum(pred + gold, 1), 0.0)


def _interval(values: FloatArray) -> tuple[float, float]:
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def _train(
    docs: tuple[list[Doc], list[Doc], list[Doc]],
    guide: Any,
    settings: TrainSettings,
    root: Path,
    warm_from: Path | None,
) -> tuple[TrainedModel, float, tuple[float, float]]:
    load_before = os.getloadavg()[0]
    clock = time.monotonic()
    train_docs, dev_docs, gate_docs = docs
    trained = train(
        train_docs, dev_docs, guide, settings=settings, output_root=root, warm_from=warm_from, test_docs=gate_docs
    )
    return trained, time.monotonic() - clock, (load_before, os.getloadavg()[0])


def _refresh(text: str) -> tuple[float, float]:
    """``SHRINK:NOISE`` as two numbers, shrink in (0, 1] and noise >= 0."""
    try:
        shrink, noise = (float(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not SHRINK:NOISE, e.g. 0.5:0.01") from None
    if not (0 < shrink <= 1 and noise >= 0):
        raise argparse.ArgumentTypeError(f"{text!r}: the shrink must be in (0, 1] and the noise at least 0")
    return shrink, noise


def main() -> None:
    """Train cold and warm at each size and seed; print time and F1 (and write every row with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "conll2003")
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 1000, 5000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--cold-sizes",
        type=int,
        nargs="+",
        help="train cold only at these sizes (default: every size; the smallest always, it starts the warm chains): "
        "e.g. --sizes 800 820 ... 1000 --cold-sizes 800 1000 follows a chain of retrains every 20 labels",
    )
    parser.add_argument("--max-steps", type=int, default=2000, help="the cold budget (NER_RETRAIN_MAX_STEPS)")
    parser.add_argument("--warm-min-steps", type=int, default=TrainSettings().warm_min_steps)
    parser.add_argument("--warm-steps-per-new-doc", type=float, default=TrainSettings().warm_steps_per_new_doc)
    parser.add_argument(
        "--warm-max-new-share",
        type=float,
        default=TrainSettings().warm_max_new_share,
        help="above this share of new training docs a retrain starts cold (the product's rule; 1: measure a warm "
        "jump anyway, as the rows before the rule did)",
    )
    parser.add_argument(
        "--refresh",
        nargs="+",
        type=_refresh,
        default=[(TrainSettings().warm_shrink, TrainSettings().warm_noise)],
        metavar="SHRINK:NOISE",
        help="warm starts to measure, each a shrink factor and a noise s.d. (shrink and perturb; 1:0 keeps the "
        "serving weights as they are); each has its own chain of warm versions",
    )
    parser.add_argument(
        "--gate",
        action="store_true",
        help="run the promotion gate as the loop does (held-out tasks split into dev and test; a refused warm "
        "candidate leaves the serving version, which the next warm start resumes)",
    )
    parser.add_argument("--tolerance", type=float, default=0.02, help="the gate's tolerance (NER_PROMOTION_TOLERANCE)")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--json", type=Path, help="also write every row here")
    args = parser.parse_args()
    guide = load_guide(ROOT / "annotation_guide" / "guides" / "conll2003.yaml")
    nlp = spacy.blank("en")
    labelled = load_docs(args.data / "train.txt", nlp, labels=guide.labels).docs[: max(args.sizes)]
    test = load_docs(args.data / "test.txt", nlp, labels=guide.labels).docs
    rng = np.random.default_rng(0)
    resamples = rng.integers(0, len(test), size=(args.resamples, len(test)))
    refreshes: list[tuple[float, float]] = args.refresh
    rows: list[dict[str, Any]] = []
    kept: dict[tuple[int, int, str], FloatArray] = {}  # (seed, labels, mode): the test counts of what serves
    with tempfile.TemporaryDirectory() as scratch:
        for seed in args.seeds:
            previous: dict[tuple[float, float], Path] = {}  # per refresh: the version serving in its chain
            served_counts: dict[tuple[float, float], FloatArray] = {}  # and its test counts
            for size in sorted(args.sizes):
                if args.gate:
                    roles = [held_out_role("1", i + 1) for i in range(size)]
                else:  # every held-out task is dev, as before the gate was measured
                    roles = ["dev" if in_dev_split("1", i + 1) else "train" for i in range(size)]
                by_role: dict[str, list[Doc]] = {role: [] for role in ROLES}
                for doc, role in zip(labelled[:size], roles, strict=True):
                    by_role[role].append(doc)
                docs = (by_role["train"], by_role["dev"], by_role["test"])
                base = TrainSettings(
                    max_steps=args.max_steps,
                    eval_frequency=100,
                    seed=seed,
                    warm_min_steps=args.warm_min_steps,
                    warm_steps_per_new_doc=args.warm_steps_per_new_doc,
                    warm_max_new_share=args.warm_max_new_share,
                    cold_every=0,
                )
                counts = {}
                cold = args.cold_sizes is None or size in args.cold_sizes or not previous
                runs: list[tuple[str, tuple[float, float], Path | None]] = [("cold", (1.0, 0.0), None)] if cold else []
                runs += [("warm", r, previous[r]) for r in refreshes if r in previous]
                for mode, refresh, source in runs:
                    settings = base.model_copy(update={"warm_shrink": refresh[0], "warm_noise": refresh[1]})
                    name = mode if mode == "cold" else f"warm {refresh[0]:g}:{refresh[1]:g}"
                    root = Path(scratch) / f"seed{seed}-{name.replace(' ', '-')}"
                    trained, seconds, load = _train(docs, guide, settings, root, source)
                    counts[name] = _counts(trained.path, test)
                    served, decision = trained.path, None
                    if args.gate and mode == "warm":
                        assert source is not None
                        assert trained.report is not None
                        serving = evaluate(load_model(source), docs[2], labels=guide.labels)
                        verdict = decide_promotion(trained.report, serving, tolerance=args.tolerance)
                        served, decision = (trained.path if verdict.promote else source), verdict.reason
                    # the chains this run continues (a cold run starts every chain not started yet)
                    for r in [refresh] if mode == "warm" else [r for r in refreshes if r not in previous]:
                        previous[r] = served
                        if served == trained.path:
                            served_counts[r] = counts[name]
                    init = trained.initialisation
                    row = {
                        "seed": seed,
                        "labels": size,
                        "mode": name,
                        "started": init.mode,  # a "warm" row can start cold: the product's rules (reason below)
                        "reason": init.reason,
                        "steps": init.max_steps,
                        "new_docs": init.new_docs,
                        "seconds": round(seconds, 1),
                        "load": [round(x, 2) for x in load],
                        "dev_f1": trained.dev_report.micro.f1,
                        "test_f1": float(_f1(counts[name])),
                        "test_ci": _interval(_f1(counts[name][resamples])),
                    }
                    if mode == "warm" and "cold" in counts:
                        row["delta_ci"] = _interval(_f1(counts[name][resamples]) - _f1(counts["cold"][resamples]))
                    if decision is not None:
                        row["promoted"] = served == trained.path
                        row["gate"] = decision
                        row["served_test_f1"] = float(_f1(served_counts[refresh]))
                        if "cold" in counts:
                            row["served_delta_ci"] = _interval(
                                _f1(served_counts[refresh][resamples]) - _f1(counts["cold"][resamples])
                            )
                    rows.append(row)
                    kept[seed, size, name] = served_counts[refresh] if decision is not None else counts[name]
                    print(json.dumps(row), file=sys.stderr, flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    _table(rows)
    _across_seeds(rows, kept, resamples)


def _table(rows: list[dict[str, Any]]) -> None:
    gated = any("gate" in r for r in rows)
    extra = " promoted | served test F1 | served - cold [95% CI] |" if gated else ""
    print(
        "\n| seed | labels | start | steps | new train docs | train s | load 1 min | dev F1 | test F1 [95% CI] "
        f"| warm - cold test F1 [95% CI] |{extra}"
    )
    print("|---" * (10 + 3 * gated) + "|")
    for r in rows:
        delta = f"{r['delta_ci'][0]:+.3f} .. {r['delta_ci'][1]:+.3f}" if "delta_ci" in r else ""
        started = " (started cold)" if r["mode"] != "cold" and r.get("started") == "cold" else ""
        cells = ""
        if gated:
            ci = r.get("served_delta_ci")
            served = f"{ci[0]:+.3f} .. {ci[1]:+.3f}" if ci else ""
            promoted = ("yes" if r["promoted"] else "**no**") if "promoted" in r else ""
            cells = f" {promoted} | {r.get('served_test_f1', r['test_f1']):.3f} | {served} |"
        print(
            f"| {r['seed']} | {r['labels']:,} | {r['mode']}{started} | {r['steps']:,} | {r['new_docs'] or ''} | "
            f"{r['seconds']:.1f} | {r['load'][0]:.1f} / {r['load'][1]:.1f} | {r['dev_f1']:.3f} | "
            f"{r['test_f1']:.3f} [{r['test_ci'][0]:.3f}, {r['test_ci'][1]:.3f}] | {delta} |{cells}"
        )


def _across_seeds(
    rows: list[dict[str, Any]], kept: dict[tuple[int, int, str], FloatArray], resamples: npt.NDArray[np.int64]
) -> None:
    """Per size with a cold run and per warm variant: served (or warm) minus cold test F1, averaged over seeds.

    The interval is the paired bootstrap of that average: each resample of the test documents is scored for every
    seed's two models and the seed means are subtracted, so it reflects the test documents' noise in the mean of
    the seeds. Beside it, the spread of cold test F1 across seeds (its sample s.d.): how much a cold retrain's F1
    moves with nothing but its seed, the noise one seed's difference is read against.
    """
    seeds = sorted({r["seed"] for r in rows})
    if len(seeds) < 2:
        return
    print(
        "\n| labels | start | seeds | mean (served or warm) - cold [95% CI of the seed mean] | min .. max "
        "| cold test F1 mean | cold s.d. across seeds |"
    )
    print("|---|---|---|---|---|---|---|")
    for size in sorted({r["labels"] for r in rows if r["mode"] == "cold"}):
        colds = [kept[s, size, "cold"] for s in seeds if (s, size, "cold") in kept]
        for mode in sorted({r["mode"] for r in rows if r["mode"] != "cold"}):
            pairs = [
                (kept[s, size, mode], kept[s, size, "cold"])
                for s in seeds
                if (s, size, mode) in kept and (s, size, "cold") in kept
            ]
            if len(pairs) < 2 or len(colds) < 2:
                continue
            differences = [float(_f1(a) - _f1(b)) for a, b in pairs]
            boot = np.mean([_f1(a[resamples]) - _f1(b[resamples]) for a, b in pairs], axis=0)
            low, high = _interval(boot)
            cold_f1 = [float(_f1(c)) for c in colds]
            print(
                f"| {size:,} | {mode} | {len(pairs)} | {np.mean(differences):+.3f} [{low:+.3f}, {high:+.3f}] | "
                f"{min(differences):+.3f} .. {max(differences):+.3f} | {np.mean(cold_f1):.3f} | "
                f"{np.std(cold_f1, ddof=1):.3f} |"
            )


if __name__ == "__main__":
    main()
