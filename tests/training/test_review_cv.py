"""The review pass with real fold models on CoNLL-2003.

Labels made wrong on purpose, where the other folds hold the right reading many times over, come out at the top of the
ranking.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import spacy
from spacy.tokens import Span

from annotation_guide import Guide
from ml.converters import load_docs
from ml.review import KINDS, ReviewSettings, cross_validate

pytestmark = pytest.mark.slow


def test_wrong_types_of_frequent_entities_rank_first(shared_data: Path, conll_guide: Guide, tmp_path: Path) -> None:
    docs = load_docs(shared_data / "conll2003" / "train.txt", spacy.blank("en"), labels=conll_guide.labels).docs[:300]
    # Iraq and Israel are locations about 30 times in these sentences: one of each becomes a person
    wrong: set[tuple[int, int, int]] = set()
    for name in ("Iraq", "Israel"):
        i, doc = next((i, d) for i, d in enumerate(docs) if any(e.text == name for e in d.ents))
        doc.ents = [Span(doc, e.start, e.end, label="person") if e.text == name else e for e in doc.ents]
        wrong |= {(i, e.start_char, e.end_char) for e in doc.ents if e.text == name}
    settings = ReviewSettings(folds=2, max_steps=300, min_confidence=0.0, max_suspects=10_000)
    result = cross_validate(docs, list(range(len(docs))), settings=settings, work_dir=tmp_path, key="t")
    assert result.docs == 300
    assert result.folds == 2
    assert all(s.kind in KINDS for s in result.suspects)
    confidences = [s.confidence for s in result.suspects]
    assert confidences == sorted(confidences, reverse=True)
    found = [
        rank
        for rank, s in enumerate(result.suspects)
        if (s.task_id, s.start, s.end) in wrong and s.kind == "wrong_type" and s.predicted_label == "location"
    ]
    assert found, "neither swapped label was contradicted"
    # among every disagreement the two folds found, the swapped labels rank in the top fifth
    assert min(found) < len(result.suspects) / 5, (found, len(result.suspects))
