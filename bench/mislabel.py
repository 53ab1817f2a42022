"""Benchmark: how well the review pass finds labels that were corrupted on purpose (issue #15).

The labels are the first ``--docs`` CoNLL-2003 training sentences with their gold entities; a share ``--share`` of
the entities is corrupted, a third each (seeded): the type swapped for another of the guide's, a boundary shifted
by one token (the start or end moved in or out, never into another entity), the span removed. The review pass
(``ml.review.cross_validate``: ``--folds`` CNNs of ``--max-steps`` steps, each checking the fold it was trained
without) then ranks its suspects. A suspect is a hit when it lies on a corrupted place (its labelled or its
predicted span overlaps the corrupted span, or for a removal the removed one, on the same sentence); precision at k
counts hits among the k most confident suspects (a suspect on CoNLL's own label errors counts as a miss, so this is
a lower bound), recall at k the corruptions hit among them. The baseline is random: ``--share`` of the labelled
spans are corrupted, so reviewing spans in random order finds one in 1 / share.

    .venv/bin/python bench/mislabel.py --docs 300 --share 0.1 --folds 5 --max-steps 300
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import spacy
from spacy.tokens import Doc, Span

from annotation_guide import load_guide
from ml.converters import load_docs
from ml.review import KINDS, ReviewSettings, Suspect, cross_validate

ROOT = Path(__file__).resolve().parents[1]
CORRUPTIONS = ("type_swap", "boundary_shift", "removed")


@dataclass(frozen=True)
class Corruption:
    """What was done to one entity of one sentence: its place now (None when removed) and before."""

    doc: int
    kind: str
    now: tuple[int, int] | None
    before: tuple[int, int]


def _shifted(doc: Doc, ent: Span, rng: random.Random, taken: set[int]) -> Span | None:
    """The entity with its start or end moved by one token, staying clear of other entities; None if it cannot."""
    options = []
    if ent.start > 0 and ent.start - 1 not in taken:
        options.append((ent.start - 1, ent.end))
    if ent.end < len(doc) and ent.end not in taken:
        options.append((ent.start, ent.end + 1))
    if len(ent) > 1:
        options += [(ent.start + 1, ent.end), (ent.start, ent.end - 1)]
    if not options:
        return None
    start, end = rng.choice(options)
    return Span(doc, start, end, label=ent.label_)


def corrupt(docs: list[Doc], *, share: float, labels: list[str], seed: int) -> list[Corruption]:
    """Corrupt ``share`` of all entities in place (a third of each kind), seeded; return what was done."""
    rng = random.Random(seed)
    places = [(d, i) for d, doc in enumerate(docs) for i in range(len(doc.ents))]
    chosen = rng.sample(places, round(share * len(places)))
    by_doc: dict[int, list[int]] = {}
    for d, i in chosen:
        by_doc.setdefault(d, []).append(i)
    done: list[Corruption] = []
    n = 0
    for d, indexes in sorted(by_doc.items()):
        doc = docs[d]
        ents = list(doc.ents)
        kept: list[Span] = []
        for i, ent in enumerate(ents):
            if i not in indexes:
                kept.append(ent)
                continue
            kind = CORRUPTIONS[n % 3]
            n += 1
            before = (ent.start_char, ent.end_char)
            if kind == "type_swap":
                new = Span(doc, ent.start, ent.end, label=rng.choice([x for x in labels if x != ent.label_]))
            elif kind == "boundary_shift":
                taken = {t for j, other in enumerate(ents) if j != i for t in range(other.start, other.end)}
                new = _shifted(doc, ent, rng, taken)
                if new is None:
                    kept.append(ent)
                    continue
            else:
                done.append(Corruption(d, kind, None, before))
                continue
            kept.append(new)
            done.append(Corruption(d, kind, (new.start_char, new.end_char), before))
        doc.ents = sorted(kept, key=lambda s: s.start)
    return done


def _hits(suspect: Suspect, corruption: Corruption) -> bool:
    places = [p for p in ((suspect.start, suspect.end), (suspect.predicted_start, suspect.predicted_end))]
    targets = [corruption.before] + ([corruption.now] if corruption.now is not None else [])
    return any(
        a is not None and b is not None and a < t_end and t_start < b for a, b in places for t_start, t_end in targets
    )


def score(suspects: list[Suspect], corruptions: list[Corruption], ks: list[int]) -> list[dict[str, float]]:
    """Precision and recall of the top-k suspects for each k (suspect task ids are doc indexes)."""
    by_doc: dict[int, list[Corruption]] = {}
    for c in corruptions:
        by_doc.setdefault(c.doc, []).append(c)
    rows = []
    for k in ks:
        top = suspects[:k]
        found: set[Corruption] = set()
        hits = 0
        for s in top:
            matched = [c for c in by_doc.get(s.task_id, []) if _hits(s, c)]
            hits += bool(matched)
            found.update(matched)
        row: dict[str, float] = {
            "k": k,
            "suspects": len(top),
            "precision": hits / len(top) if top else 0.0,
            "recall": len(found) / len(corruptions) if corruptions else 0.0,
        }
        for kind in CORRUPTIONS:
            total = sum(c.kind == kind for c in corruptions)
            row[f"recall_{kind}"] = sum(c.kind == kind for c in found) / total if total else 0.0
        rows.append(row)
    return rows


def main() -> None:
    """Corrupt the labels, run the review pass and print how many corruptions its top k finds."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--share", type=float, default=0.1, help="share of the entities corrupted")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ks", default="10,25,50,100")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    guide = load_guide(ROOT / "annotation_guide" / "guides" / "conll2003.yaml")
    data = Path(os.environ.get("NERLOOP_SHARED_DATA", ROOT.parent / "shared" / "data")) / "conll2003" / "train.txt"
    docs = load_docs(data, spacy.blank("en"), labels=guide.labels).docs[: args.docs]
    corruptions = corrupt(docs, share=args.share, labels=guide.labels, seed=args.seed)
    entities = sum(len(d.ents) for d in docs)
    settings = ReviewSettings(
        folds=args.folds, max_steps=args.max_steps, min_confidence=0.0, max_suspects=100_000, seed=args.seed
    )
    with tempfile.TemporaryDirectory(prefix="nerloop-mislabel-") as work:
        result = cross_validate(docs, list(range(len(docs))), settings=settings, work_dir=work)
    ks = sorted({int(k) for k in args.ks.split(",")} | {len(corruptions)})
    rows = score(result.suspects, corruptions, ks)
    load = os.getloadavg()[0]
    print(
        f"{len(docs)} sentences, {entities} labelled entities, {len(corruptions)} corrupted "
        f"({', '.join(f'{k} {sum(c.kind == k for c in corruptions)}' for k in CORRUPTIONS)}); "
        f"{args.folds} folds x {args.max_steps} steps in {result.seconds:.0f} s (load {load:.1f}); "
        f"{len(result.suspects)} suspects ({', '.join(f'{k} {result.counts_by_kind.get(k, 0)}' for k in KINDS)})"
    )
    print(f"random baseline precision: {len(corruptions) / max(entities, 1):.3f}")
    print(f"{'k':>5}{'precision':>11}{'recall':>8}{'swap':>7}{'shift':>7}{'removed':>9}")
    for r in rows:
        print(
            f"{r['k']:>5}{r['precision']:>11.3f}{r['recall']:>8.3f}{r['recall_type_swap']:>7.3f}"
            f"{r['recall_boundary_shift']:>7.3f}{r['recall_removed']:>9.3f}"
        )
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "args": vars(args) | {"json": str(args.json)},
                    "rows": rows,
                    "seconds": result.seconds,
                    "suspects": len(result.suspects),
                },
                indent=2,
            )
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
