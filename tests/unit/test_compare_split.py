"""The comparison's data split and progress (``ml.compare``).

A caller's dev split is used as given, the test set is never cut for the fine-tuned rows, and progress rises to 1 over
the parts.
"""

from __future__ import annotations

import pytest
import spacy
from spacy.tokens import Doc

from ml.compare import CompareError, CompareOptions, CompareProgress
from ml.compare import _split as split
from ml.compare_rows import Tracker


def _docs(n: int, prefix: str) -> list[Doc]:
    nlp = spacy.blank("en")
    return [nlp(f"{prefix} sentence {i}") for i in range(n)]


def test_without_a_dev_split_the_last_fifth_of_the_training_docs_is_held_out() -> None:
    train, test = _docs(10, "train"), _docs(4, "test")
    pool, dev, tests = split(train, test, CompareOptions(limit_llm=2), None)
    assert [d.text for d in dev] == [d.text for d in train[-2:]]
    assert pool == train[:8]
    assert tests == test  # the whole test set: the rows' sample is cut from it, the fine-tuned rows see all of it


def test_a_callers_dev_split_is_used_as_given_and_the_whole_pool_trains() -> None:
    train, dev_docs, test = _docs(3, "train"), _docs(2, "dev"), _docs(1, "test")
    pool, dev, _ = split(train, test, CompareOptions(), dev_docs)
    assert pool == train
    assert dev == dev_docs


@pytest.mark.parametrize(("train", "test"), [(4, 1), (10, 0)])
def test_too_little_data_is_refused(train: int, test: int) -> None:
    with pytest.raises(CompareError):
        split(_docs(train, "train"), _docs(test, "test"), CompareOptions(), None)


def test_progress_rises_over_the_parts_to_one() -> None:
    seen: list[CompareProgress] = []
    tracker = Tracker(4, seen.append)
    tracker.report("LLM zero-shot", 0.5)
    tracker.part_done("LLM zero-shot")
    for _ in range(3):
        tracker.report("train", 2.0)  # clipped to the part
        tracker.part_done("train")
    assert [p.fraction for p in seen] == [0.125, 0.25, 0.5, 0.5, 0.75, 0.75, 1.0, 1.0]
    assert seen[0].stage == "LLM zero-shot"
