"""Benchmark: active learning with an oracle annotator (uncertainty sampling vs random) on real corpora.

For each dataset x strategy x seed, a seed set is drawn from the pool (the same one for every strategy of
that seed). Each round trains a spaCy CNN from scratch on the labelled set, measures micro F1 on the
evaluation set, then scores the rest of the pool with that model and picks the next batch, exactly as the
product does (``uncertainty_from_spans`` -> ``score_pool`` -> ``select_batch`` with type weights from the
model's per-type dev F1), or draws it at random. The oracle "labels" the batch by moving its gold docs into
the labelled set. ``--rounds`` is the number of labelled batches, so a curve has ``rounds + 1`` points.

Splits:
  * conll2003: pool = train (capped at ``--pool-limit`` sentences, drawn at random per seed), evaluation =
    test (first ``--eval-limit`` sentences), model selection and calibration = the first 300 dev sentences.
    That dev set is a fixed validation set and is not counted as labels.
  * crossner (ai, politics, science): the train splits are tiny (100-200 sentences), so pool = train + dev
    and evaluation = test. Model selection uses the first 20% of the seed set, which is kept out of
    training for every round; those sentences count as labels (the annotator labelled them).

Per strategy the tables give the F1 after each round (mean over seeds), the area under the learning curve
(trapezoid over labels, divided by the label range), the labels at the first round whose F1 reaches random's
final F1, and that count as a fraction of random's final label count. The target checked at the end:
uncertainty sampling reaches random's final F1 with <= 60% of its labels on CoNLL-2003.

    .venv/bin/python bench/simulate.py --json /tmp/sim.json
    .venv/bin/python bench/simulate.py --datasets ai --rounds 2 --seed-size 30 --batch 20 --max-steps 60 \\
        --eval-limit 100   # smoke test, a couple of minutes
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import spacy
from spacy.tokens import Doc

from annotation_guide import Guide, load_guide
from annotation_guide.schema import EdgeCase, EntityType, Example, NonEntity
from ml.converters import load_docs
from ml.converters.conll import read_sentences
from ml.evaluation import evaluate
from ml.model_store import load_model
from ml.sampling import (
    score_pool,
    select_batch,
    select_random,
    type_weights_from_f1,
    uncertainty_from_spans,
    uncertainty_strategies,
)
from ml.training import TrainSettings, train

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CROSSNER = ("ai", "politics", "science")
RANDOM = "random"
CONLL_DEV_DOCS = 300
CROSSNER_DEV_FRACTION = 0.2
TARGET_RATIO = 0.6
CLOCK = time.monotonic()


@dataclass
class Corpus:
    """One dataset, split for the simulation."""

    name: str
    guide: Guide
    pool: list[Doc]
    dev: list[Doc]  # a fixed validation set; empty: carve it out of the seed set
    test: list[Doc]
    seed_size: int
    batch: int


@dataclass
class Point:
    """One round of one run: what was labelled and how good the model trained on it is."""

    round: int
    labels: int
    train_docs: int
    f1: float
    train_s: float
    eval_s: float
    select_s: float = 0.0


@dataclass
class Run:
    """One learning curve."""

    dataset: str
    strategy: str
    seed: int
    points: list[Point] = field(default_factory=list)


@dataclass
class RoundModel:
    """A trained round's model directory, its eval-set F1 and its per-type dev F1."""

    path: Path
    f1: float
    dev_f1: dict[str, float]
    train_s: float
    eval_s: float


def log(message: str) -> None:
    """A progress line on stderr, stamped with the time since start."""
    print(f"[{time.monotonic() - CLOCK:7.0f}s] {message}", file=sys.stderr, flush=True)


def guide_from_corpus(train_docs: Sequence[Doc], name: str, labels: Sequence[str] | None = None) -> Guide:
    """A valid guide for a corpus without one: per label, a generic definition and 5 real examples.

    Args:
        train_docs: Gold docs the examples are taken from (the first distinct mentions of each label).
        name: The project name (also used in the definitions).
        labels: The label set (defaults to every label in ``train_docs``, in order of frequency).

    Returns:
        The guide.

    Raises:
        ValueError: A label has no mention in ``train_docs``.
    """
    mentions: dict[str, list[Example]] = defaultdict(list)
    counts: dict[str, int] = defaultdict(int)
    for doc in train_docs:
        for ent in doc.ents:
            counts[ent.label_] += 1
            found = mentions[ent.label_]
            if len(found) < 5 and all(e.entity != ent.text for e in found):
                found.append(Example(text=doc.text, entity=ent.text))
    if labels is None:
        labels = sorted(counts, key=lambda label: (-counts[label], label))
    missing = [label for label in labels if not mentions[label]]
    if missing:
        raise ValueError(f"{name}: no example of {missing} in the training docs; cannot build a guide")
    types = []
    for label in labels:
        examples = mentions[label]
        examples = [examples[i % len(examples)] for i in range(5)]  # a rare label repeats its few mentions
        types.append(
            EntityType(
                name=label,
                definition=f"A mention of the '{label}' entity type as annotated in the CrossNER {name} corpus.",
                examples=examples,
                edge_cases=[EdgeCase(case="-", decision="-")],
                non_entities=[NonEntity(text="-", reason="-")],
            )
        )
    return Guide(
        project=name, description=f"Built from the {name} training data by bench/simulate.py.", entity_types=types
    )


def _labels_in(paths: Sequence[Path]) -> list[str]:
    seen: dict[str, None] = {}
    for path in paths:
        for sentence in read_sentences(path):
            for tag in sentence.tags:
                if tag != "O":
                    seen.setdefault(tag[2:], None)
    return sorted(seen)


def load_corpus(name: str, args: argparse.Namespace) -> Corpus:
    """Read one dataset and split it into pool, validation and evaluation docs."""
    blank = spacy.blank("en")
    if name == "conll2003":
        folder = DATA / "conll2003"
        guide = load_guide(ROOT / "annotation_guide" / "guides" / "conll2003.yaml")
        split = {s: load_docs(folder / f"{s}.txt", blank, labels=guide.labels).docs for s in ("train", "dev", "test")}
        return Corpus(
            name,
            guide,
            pool=split["train"],
            dev=split["dev"][:CONLL_DEV_DOCS],
            test=split["test"][: args.eval_limit],
            seed_size=args.seed_size or 100,
            batch=args.batch or 100,
        )
    if name not in CROSSNER:
        raise SystemExit(f"unknown dataset {name!r}; use conll2003 or one of {', '.join(CROSSNER)}")
    folder = DATA / "crossner" / name
    files = {s: folder / f"{s}.txt" for s in ("train", "dev", "test")}
    labels = _labels_in(list(files.values()))
    split = {s: load_docs(path, blank, labels=labels).docs for s, path in files.items()}
    pool = split["train"] + split["dev"]
    return Corpus(
        name,
        guide_from_corpus(pool, name, labels),
        pool=pool,
        dev=[],
        test=split["test"][: args.eval_limit],
        seed_size=args.seed_size or 50,
        batch=args.batch or 50,
    )


def train_round(
    corpus: Corpus, train_docs: list[Doc], dev_docs: list[Doc], seed: int, args: argparse.Namespace
) -> RoundModel:
    """Train a CNN from scratch, then measure it on the evaluation set."""
    started = time.monotonic()
    settings = TrainSettings(
        architecture="cnn", max_steps=args.max_steps, eval_frequency=max(50, args.max_steps // 4), seed=seed
    )
    trained = train(train_docs, dev_docs, corpus.guide, settings=settings, output_root=args.models / corpus.name)
    train_s = time.monotonic() - started
    started = time.monotonic()
    report = evaluate(load_model(trained.path), corpus.test, labels=corpus.guide.labels)
    dev_f1 = {label: score.f1 for label, score in trained.dev_report.per_type.items()}
    return RoundModel(trained.path, report.micro.f1, dev_f1, train_s, time.monotonic() - started)


def simulate(corpus: Corpus, strategy: str, seed: int, args: argparse.Namespace, first: dict[int, RoundModel]) -> Run:
    """One learning curve. ``first`` caches the seed-set model per seed: it is the same for every strategy."""
    order = np.random.default_rng(seed).permutation(len(corpus.pool))[: args.pool_limit]
    pool = [corpus.pool[int(i)] for i in order]  # doc ids are positions in this list
    seed_size = min(corpus.seed_size, len(pool))
    labelled = list(range(seed_size))
    unlabelled = set(range(seed_size, len(pool)))
    if corpus.dev:
        dev_docs, held_out = corpus.dev, set()
    else:
        n_dev = max(1, round(CROSSNER_DEV_FRACTION * seed_size))
        dev_docs, held_out = [pool[i] for i in labelled[:n_dev]], set(labelled[:n_dev])
    rng = np.random.default_rng(seed)
    run = Run(corpus.name, strategy, seed)
    for round_no in range(args.rounds + 1):
        train_ids = [i for i in labelled if i not in held_out]
        tag = f"{corpus.name} {strategy} seed {seed} round {round_no}/{args.rounds}"
        if round_no == 0 and seed in first:
            current = first[seed]
        else:
            log(f"{tag}: training on {len(train_ids)} docs ({len(labelled)} labels)")
            current = train_round(corpus, [pool[i] for i in train_ids], dev_docs, seed, args)
            if round_no == 0:
                first[seed] = current
        point = Point(round_no, len(labelled), len(train_ids), current.f1, current.train_s, current.eval_s)
        exhausted = round_no < args.rounds and not unlabelled
        if round_no < args.rounds and unlabelled:
            started = time.monotonic()
            chosen = _select(current, pool, sorted(unlabelled), strategy, corpus, rng)
            point.select_s = time.monotonic() - started
            labelled.extend(chosen)
            unlabelled.difference_update(chosen)
        if round_no > 0:
            shutil.rmtree(current.path, ignore_errors=True)
        run.points.append(point)
        log(
            f"{tag}: labels {point.labels} F1 {point.f1:.3f} "
            f"(train {point.train_s:.0f}s eval {point.eval_s:.0f}s select {point.select_s:.0f}s)"
        )
        if exhausted:
            log(f"{tag}: the pool is exhausted; stopping early")
            break
    return run


def _select(
    current: RoundModel, pool: list[Doc], ids: list[int], strategy: str, corpus: Corpus, rng: np.random.Generator
) -> list[int]:
    if strategy == RANDOM:
        return select_random(ids, n=corpus.batch, rng=rng)
    model = load_model(current.path)
    predicted = dict(zip(ids, model.predict([pool[i] for i in ids]), strict=True))
    scores = score_pool([uncertainty_from_spans(i, spans) for i, spans in predicted.items()], strategy=strategy)
    return select_batch(
        scores,
        n=corpus.batch,
        rng=rng,
        type_weights=type_weights_from_f1(current.dev_f1, target=corpus.guide.targets.f1),
        labels_of={i: [s.label for s in spans] for i, spans in predicted.items()},
    )


def aulc(labels: Sequence[int], f1: Sequence[float]) -> float:
    """Area under the learning curve (trapezoid over labels), divided by the label range."""
    if len(labels) < 2 or labels[-1] == labels[0]:
        return float(f1[-1])
    area = sum((labels[i + 1] - labels[i]) * (f1[i] + f1[i + 1]) / 2 for i in range(len(labels) - 1))
    return float(area / (labels[-1] - labels[0]))


def summarise(runs: list[Run]) -> list[dict[str, Any]]:
    """Per strategy: the mean curve over seeds, final F1, AULC and labels to reach random's final F1."""
    by_strategy: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_strategy[run.strategy].append(run)
    rows: list[dict[str, Any]] = []
    for strategy, group in by_strategy.items():
        length = min(len(r.points) for r in group)
        labels = [group[0].points[i].labels for i in range(length)]
        f1 = [float(np.mean([r.points[i].f1 for r in group])) for i in range(length)]
        rows.append({"strategy": strategy, "labels": labels, "f1": f1, "final_f1": f1[-1], "aulc": aulc(labels, f1)})
    baseline = next((r for r in rows if r["strategy"] == RANDOM), None)
    for row in rows:
        row["random_final_f1"] = None if baseline is None else baseline["final_f1"]
        row["labels_to_random_final"] = None
        row["ratio_to_random_final"] = None
        if baseline is None:
            continue
        reached = [n for n, f in zip(row["labels"], row["f1"], strict=True) if f >= baseline["final_f1"]]
        if reached:
            row["labels_to_random_final"] = reached[0]
            row["ratio_to_random_final"] = reached[0] / baseline["labels"][-1]
    return rows


def print_table(corpus: Corpus, pool_size: int, rows: list[dict[str, Any]], seeds: Sequence[int]) -> None:
    """One table per dataset: rows are strategies, columns the F1 after each round (headed by labels)."""
    labels = max((r["labels"] for r in rows), key=len)
    print(
        f"\n== {corpus.name}: pool {pool_size}, eval {len(corpus.test)} sentences, "
        f"seed set {corpus.seed_size}, batch {corpus.batch}, seeds {','.join(map(str, seeds))} "
        f"(micro F1 at N labels, mean over seeds)"
    )
    head = f"{'strategy':<22}" + "".join(f"{'@' + str(n):>7}" for n in labels)
    print(head + f"{'AULC':>7}{'to-rand-final':>15}{'ratio':>7}")
    for row in rows:
        cells = "".join(f"{f:>7.3f}" for f in row["f1"]) + " " * 7 * (len(labels) - len(row["f1"]))
        reach = row["labels_to_random_final"]
        ratio = row["ratio_to_random_final"]
        to_rand = str(reach) if reach is not None else "not reached" if row["random_final_f1"] is not None else "-"
        print(
            f"{row['strategy']:<22}{cells}{row['aulc']:>7.3f}{to_rand:>15}"
            + (f"{ratio:>7.0%}" if ratio is not None else f"{'-':>7}")
        )


def target_line(summaries: dict[str, list[dict[str, Any]]]) -> str:
    """The check against the target: uncertainty reaches random's final F1 with <= 60% of its labels on CoNLL."""
    goal = (
        f"target: uncertainty sampling reaches random's final F1 with <= {TARGET_RATIO:.0%} of its labels on CoNLL-2003"
    )
    rows = summaries.get("conll2003")
    if rows is None:
        return f"{goal}: not measured (conll2003 not run)"
    baseline = next((r for r in rows if r["strategy"] == RANDOM), None)
    others = [r for r in rows if r["strategy"] != RANDOM]
    if baseline is None or not others:
        return f"{goal}: not measured (needs 'random' and an uncertainty strategy)"
    parts = []
    for row in others:
        ratio = row["ratio_to_random_final"]
        if ratio is None:
            parts.append(f"{row['strategy']} not reached: NOT MET")
        else:
            verdict = "MET" if ratio <= TARGET_RATIO else "NOT MET"
            parts.append(f"{row['strategy']} {row['labels_to_random_final']} labels ({ratio:.0%}): {verdict}")
    final = f"random's final F1 {baseline['final_f1']:.3f} at {baseline['labels'][-1]} labels"
    return f"{goal}; {final}; " + "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="conll2003,ai,politics,science")
    parser.add_argument("--strategies", default="least_confidence.v1,random")
    parser.add_argument("--seed-size", type=int, default=0, help="default: 100 for conll2003, 50 for CrossNER")
    parser.add_argument("--batch", type=int, default=0, help="labels per round; default: 100 conll2003, 50 CrossNER")
    parser.add_argument("--rounds", type=int, default=8, help="labelled batches after the seed set")
    parser.add_argument("--max-steps", type=int, default=400, help="CNN training steps per round")
    parser.add_argument("--eval-limit", type=int, default=1000, help="evaluate on at most N test sentences")
    parser.add_argument("--pool-limit", type=int, default=3000, help="cap the unlabelled pool (incl. the seed set)")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--models", type=Path, default=Path("/tmp/nerloop-sim"))
    parser.add_argument("--json", type=Path, help="also write the curves and summaries here")
    args = parser.parse_args()
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    for strategy in strategies:
        if strategy != RANDOM and strategy not in uncertainty_strategies:
            parser.error(f"unknown strategy {strategy!r}; use random or {', '.join(uncertainty_strategies.names())}")
    if args.rounds < 0 or args.max_steps < 1 or args.pool_limit < 1 or args.eval_limit < 1:
        parser.error("--rounds must be >= 0 and --max-steps, --pool-limit, --eval-limit >= 1")

    all_runs: list[Run] = []
    summaries: dict[str, list[dict[str, Any]]] = {}
    for name in datasets:
        corpus = load_corpus(name, args)
        log(
            f"{name}: pool {len(corpus.pool)} (cap {args.pool_limit}), eval {len(corpus.test)}, "
            f"labels {', '.join(corpus.guide.labels)}"
        )
        runs: list[Run] = []
        for seed in seeds:
            first: dict[int, RoundModel] = {}
            for strategy in strategies:
                runs.append(simulate(corpus, strategy, seed, args, first))
            for model in first.values():
                shutil.rmtree(model.path, ignore_errors=True)
        summaries[name] = summarise(runs)
        print_table(corpus, min(len(corpus.pool), args.pool_limit), summaries[name], seeds)
        sys.stdout.flush()
        all_runs.extend(runs)
    print("\n" + target_line(summaries))
    log("done")
    if args.json:
        payload = {
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "runs": [asdict(r) for r in all_runs],
            "summaries": summaries,
            "target": target_line(summaries),
        }
        args.json.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
