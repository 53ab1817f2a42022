"""Label Studio's queue key: one owner (ml.queue_order), and how its keys relate to the sampling's uncertainty."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml.prediction import ScoredSpan
from ml.queue_order import import_order_key, predicted_queue_key, queue_keys
from ml.sampling import least_confidence, uncertainty_from_spans


def _span(start: int, label: str, score: float) -> ScoredSpan:
    return ScoredSpan(start, start + 1, label, "x", score)


def test_a_predicted_key_is_the_least_certain_entity_and_1_without_any() -> None:
    assert predicted_queue_key([_span(0, "person", 0.9), _span(2, "misc", 0.3)]) == 0.3
    assert predicted_queue_key([]) == 1.0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), max_size=8))
def test_a_predicted_key_is_1_minus_the_least_confidence_uncertainty(scores: list[float]) -> None:
    """Served lowest first, the key puts the most uncertain task first: the same order as the sampling's measure."""
    spans = [_span(2 * i, "person", p) for i, p in enumerate(scores)]
    uncertainty = least_confidence(uncertainty_from_spans(0, spans))
    assert predicted_queue_key(spans) == pytest.approx(1.0 - uncertainty, abs=1e-12)


def test_import_order_keys_follow_the_ids_and_stay_below_1() -> None:
    keys = [import_order_key(i, total=4) for i in range(4)]
    assert keys == [0.0, 0.25, 0.5, 0.75]
    with pytest.raises(ValueError, match="outside the project's 4 tasks"):
        import_order_key(4, total=4)


def test_rescore_keys_rank_the_pool_with_every_fifth_place_held_out() -> None:
    keys = queue_keys([1, 2, 3, 4, 5, 6, 7, 8], [100, 101], held_out_share=0.2, shuffle_key=float)
    queue = sorted(keys, key=keys.__getitem__)
    assert queue == [1, 2, 3, 4, 100, 5, 6, 7, 8, 101]
    assert keys[1] == 0.0
    assert keys[101] == 1.0
