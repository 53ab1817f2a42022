r"""Benchmark: active learning with an oracle annotator on four real corpora, the product's strategy against random.

For each corpus x strategy x seed, a seed set is drawn from the pool (the same one for every strategy of that
seed). Each round trains a spaCy CNN from scratch on the labelled set, measures micro F1 on the evaluation set,
then picks the next batch from the rest of the pool, exactly as the product does (``ml.sampling_signals.read_pool``
-> ``ml.sampling_strategy.choose_batch``: the measure, the per-type weights from the model's dev F1 and, with
diversity, modAL's ranked batch over the model's tok2vec doc vectors, away from the labelled docs), or draws it at
random. The oracle "labels" the batch by moving its gold docs into the labelled set. ``--rounds`` is the number of
labelled batches, so a curve has ``rounds + 1`` points.

Strategies: ``random``, or a measure (``least_confidence``, ``margin``, ``entropy``) with optional suffixes
``+div`` (diversity on, modAL's trade-off) and ``+nw`` (no per-type weights): ``least_confidence`` is the product's
default strategy.

Splits:
  * conll2003: pool = train (capped at ``--pool-limit`` sentences, drawn at random per seed), evaluation =
    test (first ``--eval-limit`` sentences), model selection and calibration = the first 300 dev sentences.
    That dev set is a fixed validation set and is not counted as labels.
  * crossner (ai, politics, science): the train splits are tiny (100-200 sentences), so pool = train + dev
    and evaluation = test. Model selection uses the first 20% of the seed set, which is kept out of
    training for every round; those sentences count as labels (the annotator labelled them).

Runnable in parts and resumable: every finished round is appended to ``--results`` (JSON lines, with the labelled
ids after its selection), and a rerun with the same budget settings skips what is there and continues an
unfinished curve at its next round. ``--report`` prints the tables from that file without training. Per corpus and
strategy: the mean and the spread (standard deviation, min-max) of F1 over seeds after each round, the area under
the learning curve (trapezoid over labels, divided by the label range; mean and sd over seeds), the labels at the
first round whose mean F1 reaches random's final mean F1, and that as a fraction of random's final labels. The
target checked at the end (issue #14): the default strategy reaches random's final F1 with at most half of random's
labels on at least three of the four corpora.

    nice .venv/bin/python bench/simulate.py --corpus ai --seed 0          # one corpus, one seed
    .venv/bin/python bench/simulate.py --report                          # the tables from what finished
    .venv/bin/python bench/simulate.py --corpus ai --rounds 1 --seed-size 30 --batch 20 --max-steps 60 \
        --eval-limit 100 --results /tmp/smoke.jsonl                       # smoke test, a couple of minutes
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
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
from ml.sampling import select_random
from ml.sampling_signals import embed_texts, read_pool
from ml.sampling_strategy import MEASURES, SamplingStrategy, choose_batch
from ml.training import TrainSettings, train

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CROSSNER = ("ai", "politics", "science")
CORPORA = ("conll2003", *CROSSNER)
RANDOM = "random"
DEFAULT_STRATEGIES = "least_confidence,least_confidence+div,random"
CONLL_DEV_DOCS = 300
CROSSNER_DEV_FRACTION = 0.2
TARGET_RATIO = 0.5
TARGET_CORPORA = 3
CLOCK = time.monotonic()
# the settings a curve depends on: results of other settings in the same file are kept apart
BUDGET_KEYS = ("rounds", "max_steps", "eval_limit", "pool_limit", "seed_size", "batch")


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


def parse_strategy(spec: str) -> SamplingStrategy | None:
    """``random`` -> None; ``margin+div+nw`` -> margin, diversity on, no per-type weights.

    Raises:
        ValueError: An unknown measure or suffix.
    """
    if spec == RANDOM:
        return None
    measure, *flags = spec.split("+")
    if measure not in MEASURES or not set(flags) <= {"div", "nw"}:
        raise ValueError(f"unknown strategy {spec!r}: random, or one of {', '.join(MEASURES)} with +div and/or +nw")
    return SamplingStrategy.model_validate(
        {"measure": measure, "diversity": "div" in flags, "type_weights": "nw" not in flags}
    )


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


def budget(args: argparse.Namespace) -> dict[str, int]:
    """The settings a curve depends on, and their digest (``key``)."""
    values = {k: int(getattr(args, k)) for k in BUDGET_KEYS}
    return values | {"key": int(hashlib.sha256(json.dumps(values).encode()).hexdigest()[:8], 16)}


def read_results(path: Path, key: int) -> dict[tuple[str, str, int], list[dict[str, Any]]]:
    """The finished rounds of curves with this budget: (corpus, strategy, seed) -> points in round order."""
    curves: dict[tuple[str, str, int], list[dict[str, Any]]] = defaultdict(list)
    if not path.exists():
        return curves
    for line in path.read_text().splitlines():
        if line.strip():
            point = json.loads(line)
            if point["budget"]["key"] == key:
                curves[(point["corpus"], point["strategy"], int(point["seed"]))].append(point)
    for points in curves.values():
        points.sort(key=lambda p: p["round"])
    return curves


def simulate(
    corpus: Corpus,
    spec: str,
    seed: int,
    args: argparse.Namespace,
    done: list[dict[str, Any]],
    first: dict[int, RoundModel],
) -> None:
    """One learning curve, from the round after ``done``'s last; each finished round is appended to the results.

    ``first`` caches the seed-set model per seed: it is the same for every strategy.
    """
    strategy = parse_strategy(spec)
    order = np.random.default_rng(seed).permutation(len(corpus.pool))[: args.pool_limit]
    pool = [corpus.pool[int(i)] for i in order]  # doc ids are positions in this list
    seed_size = min(corpus.seed_size, len(pool))
    labelled = list(range(seed_size)) if not done else list(done[-1]["labelled_after"])
    held_out: set[int] = set()
    dev_docs = corpus.dev
    if not corpus.dev:
        n_dev = max(1, round(CROSSNER_DEV_FRACTION * seed_size))
        dev_docs, held_out = [pool[i] for i in range(n_dev)], set(range(n_dev))
    rng = np.random.default_rng([seed, len(done)])  # a resumed curve draws its own, reproducible stream
    for round_no in range(len(done), args.rounds + 1):
        started = time.monotonic()
        train_ids = [i for i in labelled if i not in held_out]
        tag = f"{corpus.name} {spec} seed {seed} round {round_no}/{args.rounds}"
        if round_no == 0 and seed in first:
            current = first[seed]
        else:
            log(f"{tag}: training on {len(train_ids)} docs ({len(labelled)} labels)")
            current = train_round(corpus, [pool[i] for i in train_ids], dev_docs, seed, args)
            if round_no == 0:
                first[seed] = current
        unlabelled = sorted(set(range(len(pool))) - set(labelled))
        labels_now = len(labelled)
        select_s = time.monotonic()
        if round_no < args.rounds and unlabelled:
            labelled = labelled + _select(current, pool, unlabelled, train_ids, strategy, corpus, rng)
        select_s = time.monotonic() - select_s
        if round_no > 0:
            shutil.rmtree(current.path, ignore_errors=True)
        point = {
            "corpus": corpus.name,
            "strategy": spec,
            "seed": seed,
            "round": round_no,
            "labels": labels_now,
            "f1": current.f1,
            "train_s": current.train_s,
            "eval_s": current.eval_s,
            "select_s": select_s,
            "labelled_after": labelled,
            "budget": budget(args),
        }
        with args.results.open("a") as out:
            out.write(json.dumps(point) + "\n")
        log(
            f"{tag}: labels {point['labels']} F1 {current.f1:.3f} (train {current.train_s:.0f}s eval "
            f"{current.eval_s:.0f}s select {select_s:.0f}s; round {time.monotonic() - started:.0f}s)"
        )
        if round_no < args.rounds and not unlabelled:
            log(f"{tag}: the pool is exhausted; stopping early")
            break


def _select(
    current: RoundModel,
    pool: list[Doc],
    ids: list[int],
    labelled: list[int],
    strategy: SamplingStrategy | None,
    corpus: Corpus,
    rng: np.random.Generator,
) -> list[int]:
    if strategy is None:
        return select_random(ids, n=corpus.batch, rng=rng)
    model = load_model(current.path)
    vectors = "model" if strategy.diversity else None
    signals = read_pool(model, [pool[i] for i in ids], vectors=vectors)
    reference = None
    if strategy.diversity:
        reference = list(embed_texts(model, [pool[i].text for i in labelled], vectors="model"))
    choice = choose_batch(
        strategy,
        signals.uncertainty,
        n=corpus.batch,
        rng=rng,
        per_type_f1=current.dev_f1,
        target=corpus.guide.targets.f1,
        vectors=None if signals.vectors is None else dict(enumerate(signals.vectors)),
        labelled=reference,
    )
    return [ids[i] for i in choice.batch]


def aulc(labels: Sequence[int], f1: Sequence[float]) -> float:
    """Area under the learning curve (trapezoid over labels), divided by the label range."""
    if len(labels) < 2 or labels[-1] == labels[0]:
        return float(f1[-1])
    area = sum((labels[i + 1] - labels[i]) * (f1[i] + f1[i + 1]) / 2 for i in range(len(labels) - 1))
    return float(area / (labels[-1] - labels[0]))


def summarise(
    curves: dict[tuple[str, str, int], list[dict[str, Any]]], corpus: str, expected: int
) -> list[dict[str, Any]]:
    """Per strategy of a corpus: mean, sd, min and max F1 per round over seeds, AULC, labels to random's final.

    ``expected``: a finished curve's length (rounds + 1). Random's "final" F1 is its last round only when some seed's
    random curve has all of them; before that no strategy is compared with it.
    """
    by_strategy: dict[str, list[list[dict[str, Any]]]] = defaultdict(list)
    for (name, spec, _), points in sorted(curves.items()):
        if name == corpus and points:
            by_strategy[spec].append(points)
    rows: list[dict[str, Any]] = []
    for spec, partial in by_strategy.items():
        length = max(len(points) for points in partial)
        group = [points for points in partial if len(points) == length]  # unfinished curves wait for their end
        f1 = np.array([[p["f1"] for p in points[:length]] for points in group])
        labels = [group[0][i]["labels"] for i in range(length)]
        aulcs = [aulc(labels, list(row)) for row in f1]
        rows.append(
            {
                "strategy": spec,
                "seeds": len(group),
                "labels": labels,
                "f1": list(f1.mean(axis=0)),
                "sd": list(f1.std(axis=0)),
                "min": list(f1.min(axis=0)),
                "max": list(f1.max(axis=0)),
                "aulc": float(np.mean(aulcs)),
                "aulc_sd": float(np.std(aulcs)),
                "finished": length == expected,
            }
        )
    baseline = next((r for r in rows if r["strategy"] == RANDOM and r["finished"]), None)
    for row in rows:
        row["labels_to_random_final"] = row["ratio_to_random_final"] = None
        if baseline is None:
            continue
        reached = [n for n, f in zip(row["labels"], row["f1"], strict=True) if f >= baseline["f1"][-1]]
        if reached:
            row["labels_to_random_final"] = reached[0]
            row["ratio_to_random_final"] = reached[0] / baseline["labels"][-1]
    return rows


def print_table(corpus: str, rows: list[dict[str, Any]]) -> None:
    """One markdown table per corpus: F1 mean ± sd after each round (headed by labels), AULC, labels to random's."""
    if not rows:
        return
    labels = max((r["labels"] for r in rows), key=len)
    flat = any(r["strategy"] == RANDOM and r["f1"][-1] <= r["f1"][0] for r in rows)
    print(f"\n{corpus}: micro F1 at N labels, mean ± sd over seeds [min-max]")
    print("| strategy | seeds | " + " | ".join(f"@{n}" for n in labels) + " | AULC | labels to random's final F1 |")
    print("|---" * (len(labels) + 4) + "|")
    for row in rows:
        cells = [
            f"{m:.3f} ± {s:.3f} [{lo:.2f}-{hi:.2f}]"
            for m, s, lo, hi in zip(row["f1"], row["sd"], row["min"], row["max"], strict=True)
        ]
        cells += [""] * (len(labels) - len(cells))
        reach, ratio = row["labels_to_random_final"], row["ratio_to_random_final"]
        to_random = f"{reach} ({ratio:.0%})" if reach is not None else "not reached"
        if not any(r["strategy"] == RANDOM and r["finished"] for r in rows):
            to_random = "- (random's curves unfinished)"
        elif flat:
            to_random = "- (random's F1 did not rise)"
        print(
            f"| {row['strategy']} | {row['seeds']} | "
            + " | ".join(cells)
            + f" | {row['aulc']:.3f} ± {row['aulc_sd']:.3f} | {to_random} |"
        )


def target_line(summaries: dict[str, list[dict[str, Any]]], default: str) -> str:
    """Issue #14's target: the default strategy reaches random's final F1 with <= half its labels on >= 3 of 4."""
    goal = (
        f"target: {default} reaches random's final F1 with <= {TARGET_RATIO:.0%} of random's labels on at least "
        f"{TARGET_CORPORA} of the {len(CORPORA)} corpora (mean over seeds)"
    )
    verdicts, met = [], 0
    for corpus in CORPORA:
        rows = {r["strategy"]: r for r in summaries.get(corpus, [])}
        if RANDOM not in rows or default not in rows:
            verdicts.append(f"{corpus}: not measured")
            continue
        if not (rows[RANDOM]["finished"] and rows[default]["finished"]):
            verdicts.append(f"{corpus}: unfinished (no seed has all rounds of both {default} and random yet)")
            continue
        ratio = rows[default]["ratio_to_random_final"]
        if rows[RANDOM]["f1"][-1] <= rows[RANDOM]["f1"][0]:  # then the seed set alone "reaches" it
            verdicts.append(f"{corpus}: not meaningful (random's F1 did not rise above the seed set's)")
            continue
        ok = ratio is not None and ratio <= TARGET_RATIO
        met += ok
        verdicts.append(f"{corpus}: {'not reached' if ratio is None else f'{ratio:.0%}'} ({'met' if ok else 'missed'})")
    verdict = "MET" if met >= TARGET_CORPORA else "NOT MET"
    return f"{goal}: {verdict} ({met} met); " + "; ".join(verdicts)


def report(args: argparse.Namespace, corpora: Sequence[str], specs: Sequence[str]) -> None:
    """Print the tables and the target line from the results file."""
    curves = read_results(args.results, budget(args)["key"])
    summaries = {corpus: summarise(curves, corpus, args.rounds + 1) for corpus in corpora}
    for corpus in corpora:
        print_table(corpus, summaries[corpus])
    default = next((s for s in specs if s != RANDOM), "least_confidence")
    print("\n" + target_line(summaries, default))


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--corpus", "--datasets", dest="corpus", default=",".join(CORPORA))
    parser.add_argument("--strategies", default=DEFAULT_STRATEGIES)
    parser.add_argument("--seed", "--seeds", dest="seed", default="0,1,2")
    parser.add_argument("--seed-size", type=int, default=0, help="default: 100 for conll2003, 50 for CrossNER")
    parser.add_argument("--batch", type=int, default=0, help="labels per round; default: 100 conll2003, 50 CrossNER")
    parser.add_argument("--rounds", type=int, default=5, help="labelled batches after the seed set")
    parser.add_argument("--max-steps", type=int, default=300, help="CNN training steps per round")
    parser.add_argument("--eval-limit", type=int, default=1000, help="evaluate on at most N test sentences")
    parser.add_argument("--pool-limit", type=int, default=3000, help="cap the unlabelled pool (incl. the seed set)")
    parser.add_argument("--models", type=Path, default=Path("/tmp/nerloop-sim"))
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "simulate_results.jsonl")
    parser.add_argument("--report", action="store_true", help="print the tables from --results; train nothing")
    args = parser.parse_args()
    if args.rounds < 0 or args.max_steps < 1 or args.pool_limit < 1 or args.eval_limit < 1:
        parser.error("--rounds must be >= 0 and --max-steps, --pool-limit, --eval-limit >= 1")
    for spec in args.strategies.split(","):
        try:
            parse_strategy(spec.strip())
        except ValueError as exc:
            parser.error(str(exc))
    unknown = set(args.corpus.split(",")) - set(CORPORA)
    if unknown:
        parser.error(f"unknown corpus {sorted(unknown)}; use {', '.join(CORPORA)}")
    return args


def main() -> None:
    """Run the curves not yet in ``--results``, then print the report (only the report with ``--report``)."""
    args = _arguments()
    corpora = [c.strip() for c in args.corpus.split(",") if c.strip()]
    specs = [s.strip() for s in args.strategies.split(",") if s.strip()]
    seeds = [int(s) for s in args.seed.split(",") if s.strip()]
    if args.report:
        report(args, corpora, specs)
        return
    curves = read_results(args.results, budget(args)["key"])
    todo = [(c, s, d) for c in corpora for d in seeds for s in specs if len(curves[(c, s, d)]) < args.rounds + 1]
    log(f"{len(todo)} curves to run ({len(corpora) * len(seeds) * len(specs) - len(todo)} done in {args.results})")
    finished = 0
    for corpus_name in corpora:
        if not any(c == corpus_name for c, _, _ in todo):
            continue
        corpus = load_corpus(corpus_name, args)
        log(f"{corpus_name}: pool {len(corpus.pool)} (cap {args.pool_limit}), eval {len(corpus.test)}")
        for seed in seeds:
            first: dict[int, RoundModel] = {}
            for spec in specs:
                if (corpus_name, spec, seed) in todo:
                    simulate(corpus, spec, seed, args, curves[(corpus_name, spec, seed)], first)
                    finished += 1
                    eta = (time.monotonic() - CLOCK) / finished * (len(todo) - finished)
                    log(f"curve {finished}/{len(todo)} done; about {eta / 60:.0f} min to go at this pace")
            for model in first.values():
                shutil.rmtree(model.path, ignore_errors=True)
    report(args, corpora, specs)
    log("done")


if __name__ == "__main__":
    main()
