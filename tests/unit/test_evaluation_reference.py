"""A reference scorer for ml.evaluation (issue #16, item 7).

Its exact span P/R/F1, per type and micro, equal seqeval's (strict IOB2 chunks), which scores tag sequences and shares
no code with nervaluate or spaCy's scorer.

The gold side is the corpus file's own tags, read here line by line, and the documents ``ml.evaluation`` scores are
read by ``ml.converters``: a disagreement in either the converter or the scorer fails the test.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from seqeval.metrics import classification_report
from seqeval.scheme import IOB2
from spacy.language import Language
from spacy.tokens import Doc

from ml.converters import load_docs
from ml.evaluation import score_spans
from ml.prediction import ScoredSpan

SENTENCES = 400
# (file under ../shared/data, first sentence of the slice): a news corpus, a many-typed domain, noisy user text
SLICES = [("conll2003/test.txt", 0), ("crossner/politics/dev.txt", 100), ("wnut17/emerging.test.annotated", 300)]


def file_tags(path: Path) -> list[list[str]]:
    """The tag column of a two-column CoNLL file, one list per sentence (``-DOCSTART-`` lines left out)."""
    sentences: list[list[str]] = [[]]
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("-DOCSTART-"):
            if sentences[-1]:
                sentences.append([])
            continue
        sentences[-1].append(line.split()[-1])
    return [tags for tags in sentences if tags]


def predicted(doc: Doc, rng: random.Random, types: list[str]) -> list[tuple[int, int, str]]:
    """Token ranges ``(first, end, type)`` that err in every way a model does.

    An entity missed, a boundary one token short or long, the type swapped, an entity invented on a token outside every
    entity.
    """
    spans: list[tuple[int, int, str]] = []
    for ent in doc.ents:
        start, end, label = ent.start, ent.end, ent.label_
        error = rng.random()
        if error < 0.15:
            continue
        if error < 0.25 and end - start > 1:
            end -= 1
        elif error < 0.35 and end < len(doc) and doc[end].ent_iob_ == "O":
            end += 1
        elif error < 0.45:
            label = rng.choice(types)
        spans.append((start, end, label))
    outside = [token.i for token in doc if token.ent_iob_ == "O" and all(not a <= token.i < b for a, b, _ in spans)]
    if outside and rng.random() < 0.2:
        first = rng.choice(outside)
        spans.append((first, first + 1, rng.choice(types)))
    return sorted(spans)


def as_tags(length: int, spans: list[tuple[int, int, str]]) -> list[str]:
    """IOB2 tags of non-overlapping token ranges."""
    tags = ["O"] * length
    for start, end, label in spans:
        tags[start:end] = [f"B-{label}"] + [f"I-{label}"] * (end - start - 1)
    return tags


@pytest.mark.parametrize(("name", "first"), SLICES, ids=[name.split("/")[0] for name, _ in SLICES])
def test_exact_scores_equal_seqeval_on_real_corpora(
    shared_data: Path, blank_nlp: Language, name: str, first: int
) -> None:
    path = shared_data / name
    gold_tags = file_tags(path)[first : first + SENTENCES]
    types = sorted({tag[2:] for tags in file_tags(path) for tag in tags if tag != "O"})
    docs = load_docs(path, blank_nlp, labels=types).docs[first : first + SENTENCES]
    assert [len(doc) for doc in docs] == [len(tags) for tags in gold_tags]
    rng = random.Random(first)
    guesses = [predicted(doc, rng, types) for doc in docs]
    predictions = [
        [ScoredSpan(doc[a].idx, doc[b - 1].idx + len(doc[b - 1]), label, doc[a:b].text, 0.9) for a, b, label in spans]
        for doc, spans in zip(docs, guesses, strict=True)
    ]

    report = score_spans(docs, predictions, labels=types, bootstrap=0)
    reference = classification_report(
        gold_tags,
        [as_tags(len(doc), spans) for doc, spans in zip(docs, guesses, strict=True)],
        mode="strict",
        scheme=IOB2,
        output_dict=True,
        zero_division=0,
    )

    scored = [label for label in types if label in reference]
    assert len(scored) >= 4  # the slice holds several types, so per-type and micro differ
    for label in scored:
        ours, theirs = report.per_type[label], reference[label]
        assert (ours.precision, ours.recall, ours.f1) == pytest.approx(
            (theirs["precision"], theirs["recall"], theirs["f1-score"])
        ), label
        assert ours.support == theirs["support"], label
    micro = reference["micro avg"]
    assert (report.micro.precision, report.micro.recall, report.micro.f1) == pytest.approx(
        (micro["precision"], micro["recall"], micro["f1-score"])
    )
    assert 0.3 < report.micro.f1 < 0.95  # the predictions err, and still find most entities
