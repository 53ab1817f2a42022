"""Benchmark: nerloop's CNN against plain ``spacy train`` on the corpora of ``../shared/data``, same steps.

Per corpus: nerloop's CNN (``ml.training.spacy_cnn.train_cnn`` with the default settings, on the training sentences
as nerloop holds them: one document per task) and spaCy's own recipe (``spacy init config --pipeline ner`` for the
CPU, data through ``spacy convert -c ner -n 10``: documents of 10 consecutive sentences, and ``spacy train``), both
with the same ``--max-steps``. Both are scored on the same test sentences with the same scorer (exact spans,
greedy decoding, ``ml.evaluation.score_spans``); dev micro F1 is on the dev sentences. Progress goes to stderr.

    .venv/bin/python bench/cnn_vs_spacy.py --corpus crossner-ai [--corpus wnut17 ...] [--max-steps 2000]
    .venv/bin/python bench/cnn_vs_spacy.py --corpus all --seed 0 1 2 --json /tmp/rows.json  (per seed, then means)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import spacy
from ner_corpora import FILES, Corpus, load_corpus
from spacy.language import Language
from spacy.tokens import Doc

from ml.converters.export import to_docbin
from ml.evaluation import EvaluationReport, score_spans
from ml.prediction import ScoredSpan, doc_copy
from ml.training import Progress, TrainSettings
from ml.training.spacy_cnn import train_cnn
from ml.training.train import grouped

CLOCK = time.monotonic()


def log(message: str) -> None:
    """A progress line on stderr, stamped with the seconds since the start."""
    print(f"[{time.monotonic() - CLOCK:6.0f}s] {message}", file=sys.stderr, flush=True)


def greedy_report(nlp: Language, gold: list[Doc], labels: list[str]) -> EvaluationReport:
    """Score ``nlp``'s greedy entities on copies of the gold docs' tokens."""
    predicted = []
    for doc in nlp.pipe([doc_copy(d, nlp.vocab) for d in gold], batch_size=256):
        predicted.append([ScoredSpan(e.start_char, e.end_char, e.label_, e.text, 1.0) for e in doc.ents])
    return score_spans(gold, predicted, labels=labels)


def nerloop_cnn(corpus: Corpus, args: argparse.Namespace, work: Path) -> Path:
    """Train nerloop's CNN (its default settings, ``--max-steps``) on the training sentences."""
    settings = TrainSettings(
        max_steps=args.max_steps, seed=args.seed, **({"doc_group": args.group} if args.group else {})
    )
    work.mkdir(parents=True, exist_ok=True)
    to_docbin(grouped(corpus.train, settings.doc_group), work / "train.spacy")
    to_docbin(corpus.dev, work / "dev.spacy")

    def show(progress: Progress) -> None:
        log(f"  nerloop cnn step {progress.step} dev F1 {progress.dev_f1 or 0.0:.3f}")

    return train_cnn(
        settings,
        train_path=work / "train.spacy",
        dev_path=work / "dev.spacy",
        output_dir=work / "out",
        on_progress=show,
    )


def plain_spacy(corpus: Corpus, args: argparse.Namespace, work: Path) -> Path:
    """Train with spaCy's own recipe through its command line: init config, convert -n 10, train."""
    python = sys.executable
    work.mkdir(parents=True, exist_ok=True)
    config = work / "config.cfg"
    run = [python, "-m", "spacy"]
    _call([*run, "init", "config", str(config), "--lang", "en", "--pipeline", "ner", "--optimize", "efficiency"])
    for split, path in zip(("train", "dev"), corpus.files[:2], strict=True):
        out = work / split
        out.mkdir(exist_ok=True)
        _call([*run, "convert", str(path), str(out), "--converter", "ner", "-n", str(args.n_sents)])
        (out / f"{path.stem}.spacy").rename(work / f"{split}.spacy")
    log_file = work / "train.log"
    log(f"  plain spacy train ({args.max_steps} steps; log {log_file})")
    with log_file.open("w") as handle:
        subprocess.run(
            [
                *run,
                "train",
                str(config),
                "--output",
                str(work / "out"),
                "--paths.train",
                str(work / "train.spacy"),
                "--paths.dev",
                str(work / "dev.spacy"),
                "--training.max_steps",
                str(args.max_steps),
                "--system.seed",
                str(args.seed),
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
            check=True,
        )
    return work / "out" / "model-best"


def _call(command: list[str]) -> None:
    subprocess.run(command, check=True, capture_output=True)


def bench(name: str, seed: int, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Both trainings on one corpus with one seed; their test and dev micro F1."""
    corpus = load_corpus(name, root)
    labels = list(corpus.guide.labels)
    log(f"{name} seed {seed}: {len(corpus.train)} train, {len(corpus.dev)} dev, {len(corpus.test)} test sentences")
    group = args.group or TrainSettings().doc_group
    row: dict[str, Any] = {"corpus": name, "seed": seed, "train": len(corpus.train), "steps": args.max_steps}
    row["group"] = group
    systems = (("nerloop", nerloop_cnn), ("spacy", plain_spacy))
    for system, trainer in systems[:1] if args.skip_spacy else systems:
        started = time.monotonic()
        best = trainer(corpus, argparse.Namespace(**{**vars(args), "seed": seed}), root / f"{name}-{seed}-{system}")
        seconds = time.monotonic() - started
        nlp = spacy.load(best)
        test, dev = greedy_report(nlp, corpus.test, labels), greedy_report(nlp, corpus.dev, labels)
        row[f"{system}_test_f1"], row[f"{system}_dev_f1"], row[f"{system}_s"] = test.micro.f1, dev.micro.f1, seconds
        log(f"{name} {system}: test micro F1 {test.micro.f1:.3f}, dev {dev.micro.f1:.3f}, {seconds:.0f} s")
    return row


def main() -> None:
    """Train and score both recipes on each chosen corpus; print the rows (and write them with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", action="append", help=f"one of {', '.join(FILES)} or all (repeatable)")
    parser.add_argument("--max-steps", type=int, default=2000, help="steps of both trainings")
    parser.add_argument("--n-sents", type=int, default=10, help="spacy convert -n: sentences per document")
    parser.add_argument("--seed", type=int, nargs="+", default=[0], help="seeds of both trainings (one row each)")
    parser.add_argument("--group", type=int, help="nerloop's CNN: training sentences per document (default: its own)")
    parser.add_argument("--skip-spacy", action="store_true", help="train nerloop's CNN only (a variant)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    names = args.corpus or ["all"]
    if "all" in names:
        names = list(FILES)
    rows = []
    with tempfile.TemporaryDirectory(prefix="nerloop-cnn-vs-spacy-") as scratch:
        for name in names:
            for seed in args.seed:
                rows.append(bench(name, seed, args, Path(scratch)))
                if args.json:  # after every row: a long run stopped part-way keeps what it measured
                    args.json.write_text(json.dumps(rows, indent=2))
    print(f"\n{'corpus':<19}{'seed':>5}{'train':>7}{'steps':>7}{'group':>7}", end="")
    print(f"{'nerloop':>9}{'spacy':>8}{'diff':>8}", end="")
    print(f"{'dev nerloop':>13}{'dev spacy':>11}{'s nerloop':>11}{'s spacy':>9}")
    for r in rows:
        spacy_f1 = r.get("spacy_test_f1")
        line = f"{r['corpus']:<19}{r['seed']:>5}{r['train']:>7}{r['steps']:>7}{r['group']:>7}"
        line += f"{r['nerloop_test_f1']:>9.3f}"
        line += (
            f"{spacy_f1:>8.3f}{r['nerloop_test_f1'] - spacy_f1:>+8.3f}" if spacy_f1 is not None else f"{'-':>8}{'-':>8}"
        )
        line += f"{r['nerloop_dev_f1']:>13.3f}" + (
            f"{r['spacy_dev_f1']:>11.3f}" if spacy_f1 is not None else f"{'-':>11}"
        )
        line += f"{r['nerloop_s']:>11.0f}" + (f"{r['spacy_s']:>9.0f}" if spacy_f1 is not None else f"{'-':>9}")
        print(line)
    summarise(rows)


def summarise(rows: list[dict[str, Any]]) -> None:
    """Per corpus over the seeds: mean test F1 of each, the mean difference and its spread."""
    paired = [r for r in rows if r.get("spacy_test_f1") is not None]
    corpora = list(dict.fromkeys(r["corpus"] for r in paired))
    if not corpora or len(paired) == len(corpora):
        return
    print(f"\n{'corpus':<19}{'seeds':>6}{'nerloop':>9}{'spacy':>8}{'mean diff':>11}{'sd diff':>9}{'min':>8}{'max':>8}")
    for name in corpora:
        own = [r for r in paired if r["corpus"] == name]
        diffs = np.array([r["nerloop_test_f1"] - r["spacy_test_f1"] for r in own])
        line = f"{name:<19}{len(own):>6}{np.mean([r['nerloop_test_f1'] for r in own]):>9.3f}"
        line += f"{np.mean([r['spacy_test_f1'] for r in own]):>8.3f}{diffs.mean():>+11.3f}"
        print(line + f"{diffs.std(ddof=1) if len(own) > 1 else 0.0:>9.3f}{diffs.min():>+8.3f}{diffs.max():>+8.3f}")


if __name__ == "__main__":
    main()
