"""The project's sampling strategy: each setting changes the batch it chooses, and bad settings are refused."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from ml.errors import EmptyPoolError
from ml.sampling import DocUncertainty, select_batch
from ml.sampling_strategy import SamplingStrategy, choose_batch


def _pool() -> list[DocUncertainty]:
    # least confidence / margin / entropy: doc 0 (one entity at 0.45) 0.55 / 0.90 / 0.993; doc 1 (tokens with a
    # close second best) 0.50 / 0.98 / 1.0; doc 2 (a weak type at 0.72) 0.28 / 0.56 / 0.855; docs 3-9 confident
    docs = [
        DocUncertainty(0, (0.45,), ("PER",)),
        DocUncertainty(1, (), (), token_best=(0.5, 0.99), token_second=(0.48, 0.0)),
        DocUncertainty(2, (0.72,), ("ORG",)),
    ]
    docs += [DocUncertainty(i, (0.95 - i * 0.001,), ("PER",)) for i in range(3, 10)]
    return docs


def _choose(strategy: SamplingStrategy, n: int = 2, **more: object) -> list[int]:
    return choose_batch(
        strategy,
        _pool(),
        n=n,
        rng=np.random.default_rng(0),
        per_type_f1={"PER": 0.9, "ORG": 0.0},
        target=0.85,
        **more,  # type: ignore[arg-type]
    ).batch


def test_measure_type_weights_and_hand_weights_change_the_batch() -> None:
    plain = SamplingStrategy(type_weights=False)
    assert _choose(plain) == [0, 1]
    assert _choose(plain.model_copy(update={"measure": "margin"})) == [1, 0]
    assert _choose(plain.model_copy(update={"measure": "entropy"})) == [1, 0]
    assert _choose(SamplingStrategy(), n=1) == [2]  # ORG at F1 0 weighs 2: 0.28 * 2 beats 0.55
    assert _choose(SamplingStrategy(weights={"ORG": 0.5}), n=1) == [0]  # a hand-set weight over the computed one


def test_diversity_changes_the_batch_and_needs_vectors() -> None:
    same = np.array([1.0, 0.0])
    vectors = {i: same + i * 1e-4 for i in range(9)} | {9: np.array([0.0, 1.0])}
    strategy = SamplingStrategy(type_weights=False, diversity=True, diversity_weight=0.7)
    plain = _choose(SamplingStrategy(type_weights=False), n=3)
    diverse = _choose(strategy, n=3, vectors=vectors)
    assert 9 not in plain
    assert 9 in diverse
    modal = _choose(strategy.model_copy(update={"diversity_weight": None}), n=3, vectors=vectors)
    assert 9 in modal
    with pytest.raises(ValueError, match="no doc vectors"):
        _choose(strategy)


def test_bad_strategies_are_refused() -> None:
    with pytest.raises(ValidationError):
        SamplingStrategy.model_validate({"measure": "bald"})
    with pytest.raises(ValidationError):
        SamplingStrategy.model_validate({"diversity_weight": 1.5})
    with pytest.raises(ValidationError):
        SamplingStrategy.model_validate({"diversty": True})
    with pytest.raises(ValueError, match="positive"):
        _choose(SamplingStrategy(weights={"PER": -1.0}))
    with pytest.raises(EmptyPoolError):
        choose_batch(SamplingStrategy(), [], n=1, rng=np.random.default_rng(0), per_type_f1={}, target=0.85)


def test_describe() -> None:
    assert SamplingStrategy().describe() == "least_confidence + type weights"
    text = SamplingStrategy(measure="margin", diversity=True, type_weights=False, weights={"ORG": 2}).describe()
    assert text == "margin + diversity (modAL alpha, model vectors) + weights ORG=2"


def test_modal_s_trade_off_counts_the_whole_pool_and_every_labelled_doc() -> None:
    """With diversity on, modAL's alpha is the project's |U| / (|U| + |D|), not the ranked sample's.

    Only the most uncertain ``candidates`` are ranked and only some labelled docs embedded, but alpha counts 100
    unlabelled docs and ``labelled_count``.
    """
    rng = np.random.default_rng(5)
    pool = [DocUncertainty(i, (float(rng.uniform(0.05, 0.95)),), ("PER",)) for i in range(100)]
    vectors = {i: rng.normal(size=6) for i in range(100)}
    labelled = [rng.normal(size=6) for _ in range(4)]
    strategy = SamplingStrategy(type_weights=False, diversity=True)

    def choose(**more: object) -> list[int]:
        return choose_batch(
            strategy,
            pool,
            n=5,
            rng=np.random.default_rng(0),
            per_type_f1={},
            target=0.85,
            vectors=vectors,
            labelled=labelled,
            candidates=20,
            **more,  # type: ignore[arg-type]
        ).batch

    by_uncertainty = sorted(range(100), key=lambda i: pool[i].span_scores[0])[:5]
    assert choose(labelled_count=10**7) == by_uncertainty  # alpha ~ 0
    top = sorted(range(100), key=lambda i: pool[i].span_scores[0])[:20]
    as_modal_would = select_batch(
        {i: 1.0 - pool[i].span_scores[0] for i in top},
        n=5,
        rng=np.random.default_rng(0),
        embeddings=vectors,
        labelled=labelled,
        diversity=None,
        unlabelled_count=100,
        labelled_count=4,
    )
    assert choose() == as_modal_would
    sample_sized = select_batch(
        {i: 1.0 - pool[i].span_scores[0] for i in top},
        n=5,
        rng=np.random.default_rng(0),
        embeddings=vectors,
        labelled=labelled,
        diversity=None,
    )
    assert as_modal_would != sample_sized  # the counts matter on this pool
