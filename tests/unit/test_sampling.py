from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from ml.errors import EmptyPoolError, MLError, UnknownStrategyError
from ml.prediction import ScoredSpan
from ml.queue_order import queue_keys
from ml.sampling import (
    DocUncertainty,
    score_pool,
    select_batch,
    select_random,
    type_weights_from_f1,
    uncertainty_from_spans,
    uncertainty_strategies,
)

SETTINGS = settings(max_examples=100, deadline=None)
STRATEGIES = ["least_confidence.v1", "margin.v1", "entropy.v1"]


def _doc(doc_id: int, *scores: float, best: tuple[float, ...] = (), second: tuple[float, ...] = ()) -> DocUncertainty:
    return DocUncertainty(doc_id, tuple(scores), ("PER",) * len(scores), token_best=best, token_second=second)


@st.composite
def doc_uncertainties(draw: st.DrawFn, doc_id: int = 0) -> DocUncertainty:
    probability = st.floats(0.0, 1.0)
    spans = draw(st.lists(probability, max_size=6))
    best = draw(st.lists(probability, max_size=6))
    second = [draw(st.floats(0.0, min(b, 1.0 - b))) for b in best]
    labels = draw(st.lists(st.sampled_from(["PER", "ORG", "LOC"]), min_size=len(spans), max_size=len(spans)))
    return DocUncertainty(doc_id, tuple(spans), tuple(labels), tuple(best), tuple(second))


pools = st.dictionaries(st.integers(0, 10_000), st.floats(0.0, 1.0), min_size=1, max_size=30)


def _embeddings(ids: list[int], seed: int) -> dict[int, NDArray[np.float64]]:
    rng = np.random.default_rng(seed)
    return {doc_id: rng.normal(size=4) + 0.01 for doc_id in ids}


# --- strategies, by hand ---------------------------------------------------------------------------------------


def test_least_confidence_by_hand() -> None:
    assert score_pool([_doc(1, 0.9, 0.6)]) == {1: pytest.approx(0.4)}
    tokens = _doc(2, 0.9, 0.6, best=(0.95, 0.55), second=(0.04, 0.4))
    assert score_pool([tokens], strategy="least_confidence.v1") == {2: pytest.approx(0.45)}


def test_margin_by_hand() -> None:
    assert score_pool([_doc(1, 0.9, 0.6)], strategy="margin.v1") == {1: pytest.approx(0.8)}  # 1 - |2*0.6 - 1|
    assert score_pool([_doc(2, 0.5)], strategy="margin.v1") == {2: pytest.approx(1.0)}
    assert score_pool([_doc(3, 0.02)], strategy="margin.v1") == {3: pytest.approx(0.04)}
    # token probabilities replace the span scores: 1 - min(0.9 - 0.05, 0.6 - 0.3)
    tokens = _doc(4, 0.5, best=(0.9, 0.6), second=(0.05, 0.3))
    assert score_pool([tokens], strategy="margin.v1") == {4: pytest.approx(0.7)}


def test_entropy_by_hand() -> None:
    assert score_pool([_doc(1, 0.5, 0.99)], strategy="entropy.v1") == {1: pytest.approx(1.0)}
    assert score_pool([_doc(2, 0.9)], strategy="entropy.v1") == {2: pytest.approx(0.4690, abs=1e-4)}
    assert score_pool([_doc(3, 1.0, 0.0)], strategy="entropy.v1") == {3: 0.0}
    tokens = _doc(4, 1.0, best=(0.9,), second=(0.1,))
    assert score_pool([tokens], strategy="entropy.v1") == {4: pytest.approx(0.4690, abs=1e-4)}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_borderline_span_is_more_uncertain_than_confident_ones(strategy: str) -> None:
    scores = score_pool([_doc(1, 0.99, 0.99), _doc(2, 0.99, 0.51), _doc(3, 1.0)], strategy=strategy)
    assert scores[2] > scores[1] > scores[3]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_doc_without_signal_scores_the_empty_base(strategy: str) -> None:
    blank = DocUncertainty(7, (), ())
    assert score_pool([blank], strategy=strategy) == {7: 0.0}
    assert score_pool([blank], strategy=strategy, empty=0.1) == {7: 0.1}


@SETTINGS
@given(doc=doc_uncertainties(), strategy=st.sampled_from(STRATEGIES), empty=st.floats(0.0, 1.0))
def test_scores_are_in_unit_interval(doc: DocUncertainty, strategy: str, empty: float) -> None:
    assert 0.0 <= score_pool([doc], strategy=strategy, empty=empty)[doc.doc_id] <= 1.0


def test_unknown_strategy_names_the_known_ones() -> None:
    with pytest.raises(UnknownStrategyError) as caught:
        score_pool([_doc(1, 0.5)], strategy="bald.v1")
    assert isinstance(caught.value, MLError)
    assert "bald.v1" in str(caught.value)
    assert all(name in str(caught.value) for name in STRATEGIES)


def test_registry_refuses_a_taken_or_unversioned_name() -> None:
    assert set(STRATEGIES) <= set(uncertainty_strategies.names())
    with pytest.raises(ValueError, match="already registered"):
        uncertainty_strategies.register("margin.v1")
    with pytest.raises(ValueError, match="must look like"):
        uncertainty_strategies.register("margin")


def test_pool_errors() -> None:
    with pytest.raises(EmptyPoolError):
        score_pool([])
    with pytest.raises(ValueError, match="same doc_id"):
        score_pool([_doc(1, 0.5), _doc(1, 0.7)])
    with pytest.raises(ValueError, match="2 span scores but 1 labels"):
        DocUncertainty(1, (0.5, 0.6), ("PER",))
    with pytest.raises(ValueError, match="probabilities"):
        DocUncertainty(1, (float("nan"),), ("PER",))


def test_uncertainty_from_spans() -> None:
    spans = [ScoredSpan(0, 5, "PER", "Alice", 0.7), ScoredSpan(10, 15, "LOC", "Paris", 1.0000001)]
    doc = uncertainty_from_spans(42, spans)
    assert doc == DocUncertainty(42, (0.7, 1.0), ("PER", "LOC"))
    assert uncertainty_from_spans(3, []) == DocUncertainty(3, (), ())


# --- selection ---------------------------------------------------------------------------------------------------


@SETTINGS
@given(scores=pools, n=st.integers(1, 40), seed=st.integers(0, 2**32 - 1), diversity=st.none() | st.floats(0.0, 1.0))
def test_select_batch_returns_distinct_ids_from_the_pool(
    scores: dict[int, float], n: int, seed: int, diversity: float | None
) -> None:
    embeddings = _embeddings(sorted(scores), seed)
    for vectors in (None, embeddings):
        first = select_batch(scores, n=n, rng=np.random.default_rng(seed), embeddings=vectors, diversity=diversity)
        again = select_batch(scores, n=n, rng=np.random.default_rng(seed), embeddings=vectors, diversity=diversity)
        assert first == again
        assert len(first) == len(set(first)) == min(n, len(scores))
        assert set(first) <= set(scores)


@SETTINGS
@given(scores=pools, n=st.integers(1, 40), seed=st.integers(0, 2**32 - 1))
def test_without_embeddings_the_batch_is_the_top_n(scores: dict[int, float], n: int, seed: int) -> None:
    chosen = select_batch(scores, n=n, rng=np.random.default_rng(seed))
    rest = set(scores) - set(chosen)
    assert [scores[d] for d in chosen] == sorted((scores[d] for d in chosen), reverse=True)
    assert all(scores[c] >= scores[r] for c in chosen for r in rest)
    # diversity 0 ranks by uncertainty alone, ties broken the same way
    embeddings = _embeddings(sorted(scores), seed)
    same = select_batch(scores, n=n, rng=np.random.default_rng(seed), embeddings=embeddings, diversity=0.0)
    assert same == chosen


def test_diversity_picks_from_both_clusters() -> None:
    rng = np.random.default_rng(0)
    cluster_a = {i: np.array([1.0, 0.0, 0.0]) + rng.normal(scale=0.01, size=3) for i in range(10)}
    cluster_b = {i: np.array([0.0, 1.0, 0.0]) + rng.normal(scale=0.01, size=3) for i in range(10, 20)}
    embeddings = cluster_a | cluster_b
    scores = {i: 0.80 + i * 0.001 for i in cluster_a} | {i: 0.75 + i * 0.001 for i in cluster_b}
    greedy = select_batch(scores, n=4, rng=np.random.default_rng(1), embeddings=embeddings, diversity=0.0)
    assert set(greedy) <= set(cluster_a)
    diverse = select_batch(scores, n=4, rng=np.random.default_rng(1), embeddings=embeddings, diversity=0.5)
    assert diverse[0] == 9  # the most uncertain doc comes first
    assert set(diverse) & set(cluster_a)
    assert set(diverse) & set(cluster_b)


@pytest.mark.parametrize("diversity", [None, 0.5])
def test_labelled_docs_push_the_batch_away(diversity: float | None) -> None:
    rng = np.random.default_rng(0)
    near_a = [np.array([1.0, 0.0, 0.0]) + rng.normal(scale=0.01, size=3) for _ in range(12)]
    embeddings = {i: near_a[i] for i in range(10)}
    embeddings |= {i: np.array([0.0, 1.0, 0.0]) + rng.normal(scale=0.01, size=3) for i in range(10, 20)}
    scores = {i: 0.80 + i * 0.001 if i < 10 else 0.75 + i * 0.001 for i in embeddings}
    free = select_batch(scores, n=3, rng=np.random.default_rng(1), embeddings=embeddings, diversity=diversity)
    away = select_batch(
        scores, n=3, rng=np.random.default_rng(1), embeddings=embeddings, diversity=diversity, labelled=near_a[10:]
    )
    assert away[0] >= 10  # cluster A is labelled already: the batch starts in cluster B
    assert free != away
    with pytest.raises(ValueError, match="dimensions"):
        select_batch(scores, n=3, rng=rng, embeddings=embeddings, labelled=[np.ones(4)])


def test_type_weights_promote_docs_with_weak_types() -> None:
    weights = type_weights_from_f1({"PER": 0.9, "ORG": 0.34}, target=0.85)
    assert weights == {"PER": 1.0, "ORG": pytest.approx(1.6)}
    scores = {1: 0.6, 2: 0.5, 3: 0.55}
    labels_of = {1: ["PER"], 2: ["PER", "ORG"]}  # doc 3 predicted nothing: weight 1
    assert select_batch(scores, n=1, rng=np.random.default_rng(0)) == [1]
    weighted = select_batch(scores, n=3, rng=np.random.default_rng(0), type_weights=weights, labels_of=labels_of)
    assert weighted == [2, 1, 3]  # 0.5 * 1.6 = 0.8 beats 0.6
    with pytest.raises(ValueError, match="labels_of"):
        select_batch(scores, n=1, rng=np.random.default_rng(0), type_weights=weights)


def test_type_weights_from_f1_bounds() -> None:
    assert type_weights_from_f1({"A": 0.0, "B": 0.85, "C": 1.0}) == {"A": 2.0, "B": 1.0, "C": 1.0}
    with pytest.raises(ValueError, match="target"):
        type_weights_from_f1({"A": 0.5}, target=0.0)


def test_selection_input_errors() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(EmptyPoolError):
        select_batch({}, n=3, rng=rng)
    with pytest.raises(ValueError, match="n must be at least 1"):
        select_batch({1: 0.5}, n=0, rng=rng)
    with pytest.raises(ValueError, match="no embedding for doc ids \\[2\\]"):
        select_batch({1: 0.5, 2: 0.4}, n=1, rng=rng, embeddings={1: np.ones(3)})
    with pytest.raises(ValueError, match="non-zero"):
        select_batch({1: 0.5, 2: 0.4}, n=1, rng=rng, embeddings={1: np.ones(3), 2: np.zeros(3)})


def test_n_beyond_the_pool_returns_it_all_ranked() -> None:
    scores = {1: 0.2, 2: 0.9, 3: 0.5}
    assert select_batch(scores, n=10, rng=np.random.default_rng(0)) == [2, 3, 1]


def test_ties_are_broken_by_the_rng_not_the_global_one() -> None:
    scores = dict.fromkeys(range(50), 0.5)
    before = np.random.get_state()[1].copy()  # type: ignore[index]
    picks = {tuple(select_batch(scores, n=5, rng=np.random.default_rng(seed))) for seed in range(5)}
    assert len(picks) > 1
    assert np.array_equal(np.random.get_state()[1], before)  # type: ignore[index]


def test_random_baseline() -> None:
    pool = list(range(100))
    first = select_random(pool, n=10, rng=np.random.default_rng(1))
    assert first == select_random(pool[::-1], n=10, rng=np.random.default_rng(1))  # input order does not matter
    assert first != select_random(pool, n=10, rng=np.random.default_rng(2))
    assert len(set(first)) == 10
    assert set(first) <= set(pool)
    assert sorted(select_random(pool, n=500, rng=np.random.default_rng(1))) == pool
    with pytest.raises(EmptyPoolError):
        select_random([], n=1, rng=np.random.default_rng(1))
    with pytest.raises(ValueError, match="n must be at least 1"):
        select_random(pool, n=-1, rng=np.random.default_rng(1))


@settings(max_examples=60, deadline=None)
@given(
    pool=st.integers(0, 60),
    held=st.integers(0, 20),
    share=st.sampled_from([0.1, 0.2, 0.25, 0.5, 1.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_held_out_places_do_not_depend_on_the_models_scores(pool: int, held: int, share: float, seed: int) -> None:
    """Issue #12: a held-out task's place in the queue does not depend on the model's scores.

    Whatever the model thinks of the tasks (two unrelated uncertainty orders of the pool), every held-out task gets the
    same place in the queue, every round(1/share)-th place while both lists last.
    """
    rng = np.random.default_rng(seed)
    pool_ids, held_ids = list(range(pool)), list(range(1000, 1000 + held))
    shuffle = {t: float(rng.uniform()) for t in held_ids}
    keys = [
        queue_keys(list(rng.permutation(pool_ids)), held_ids, held_out_share=share, shuffle_key=shuffle.__getitem__)
        for _ in range(2)
    ]
    places = [{t: sorted(k, key=k.__getitem__).index(t) for t in held_ids} for k in keys]
    assert places[0] == places[1]
    every = round(1 / share)
    both = min(held, pool // max(1, every - 1)) if every > 1 else held
    assert sorted(places[0].values())[:both] == [every * (i + 1) - 1 for i in range(both)]
    assert sorted(held_ids, key=places[0].__getitem__) == sorted(held_ids, key=shuffle.__getitem__)
    assert all(0.0 <= v <= 1.0 for v in keys[0].values())
    assert len(keys[0]) == pool + held


def test_queue_keys_refuse_a_share_outside_0_1() -> None:
    with pytest.raises(ValueError, match="held_out_share"):
        queue_keys([1], [2], held_out_share=0.0, shuffle_key=float)


# --- one distance scale, normalised weights, explicit trade-off (review of issue #14) ------------------------------


def test_the_default_trade_off_is_the_published_fixed_alpha() -> None:
    """``select_batch`` published ``diversity=0.5``; modAL's adaptive trade-off is asked for with None."""
    rng = np.random.default_rng(0)
    embeddings = {i: rng.normal(size=4) for i in range(30)}
    scores = {i: float(rng.uniform()) for i in range(30)}

    def pick(**more: object) -> list[int]:
        return select_batch(scores, n=6, rng=np.random.default_rng(1), embeddings=embeddings, **more)  # type: ignore[arg-type]

    assert pick() == pick(diversity=0.5)
    assert pick() != pick(diversity=None)


@pytest.mark.parametrize("seed", range(8))
def test_a_fixed_alpha_weighs_the_distance_as_modal_does(seed: int) -> None:
    """Fixed or adaptive, the distance term is modAL's ``1 - 1 / (1 + d)``.

    A fixed alpha equal to modAL's ``|U| / (|U| + |D|)`` makes the same first pick as modAL's ranked batch.
    """
    rng = np.random.default_rng(seed)
    embeddings = {i: rng.normal(size=5) for i in range(20)}
    scores = {i: float(rng.uniform()) for i in range(20)}
    labelled = [rng.normal(size=5) for _ in range(5)]
    common = {"n": 1, "embeddings": embeddings, "labelled": labelled}
    modal = select_batch(scores, rng=np.random.default_rng(0), diversity=None, **common)  # type: ignore[arg-type]
    fixed = select_batch(scores, rng=np.random.default_rng(0), diversity=20 / 25, **common)  # type: ignore[arg-type]
    assert fixed == modal


def test_fixed_alpha_distance_term_is_bounded_like_modal_s() -> None:
    # labelled at e1; doc 1 opposite (d = 2, term 2/3), doc 2 orthogonal (d = 1, term 1/2). At alpha 0.5:
    # 0.5 * 0.10 + 0.5 * 2/3 = 0.383 < 0.5 * 0.35 + 0.5 * 1/2 = 0.425, so doc 2; the raw distance (in [0, 2]) would
    # give doc 1 (1.05 against 0.675)
    embeddings = {1: np.array([-1.0, 0.0]), 2: np.array([0.0, 1.0])}
    chosen = select_batch(
        {1: 0.10, 2: 0.35},
        n=1,
        rng=np.random.default_rng(0),
        embeddings=embeddings,
        diversity=0.5,
        labelled=[np.array([1.0, 0.0])],
    )
    assert chosen == [2]


@pytest.mark.parametrize(("diversity", "weight"), [(0.5, 2.0), (None, 4.0)])
def test_type_weighted_uncertainty_stays_in_0_1_against_the_distance(diversity: float | None, weight: float) -> None:
    """A type weight must not multiply the uncertainty's share: weighted scores are divided by the largest weight.

    Doc 1 is a copy of a labelled doc (d = 0) with a weak type (uncertainty 0.9); doc 2 is far (d = 2, term 2/3)
    with uncertainty 0.8 and an unweighted type. At alpha 0.5, weight 2: normalised 0.45 against 0.533 (doc 2),
    unnormalised 0.9 against 0.733 (doc 1). At modAL's alpha 2/3, weight 4: normalised 0.3 against 0.511,
    unnormalised 1.2 against 0.711.
    """
    chosen = select_batch(
        {1: 0.9, 2: 0.8},
        n=1,
        rng=np.random.default_rng(0),
        embeddings={1: np.array([1.0, 0.0]), 2: np.array([-1.0, 0.0])},
        diversity=diversity,
        labelled=[np.array([1.0, 0.0])],
        type_weights={"ORG": weight, "PER": 1.0},
        labels_of={1: ["ORG"], 2: ["PER"]},
    )
    assert chosen == [2]
    # without diversity the weights still decide the order
    plain = select_batch(
        {1: 0.5, 2: 0.8},
        n=2,
        rng=np.random.default_rng(0),
        type_weights={"ORG": 2.0},
        labels_of={1: ["ORG"], 2: ["PER"]},
    )
    assert plain == [1, 2]
