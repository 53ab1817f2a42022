"""Choosing few-shot demonstrations."""

from __future__ import annotations

import numpy as np
import pytest

from ml.llm import Demonstration, DemoSelector, DemoStrategy

POOL = [
    Demonstration("The Platform team drained the k8s prod cluster.", (("Platform team", "TEAM"),)),
    Demonstration("Kafka consumer lag grew after the checkout-service deploy.", (("Kafka", "INFRA"),)),
    Demonstration("Raising MAX_POOL_SIZE fixed the connection starvation.", (("MAX_POOL_SIZE", "CONFIG"),)),
    Demonstration("We migrated the dashboard from Angular to React.", (("React", "LIBRARY"),)),
    Demonstration("Kafka brokers lost consumer offsets during the failover.", (("Kafka", "INFRA"),)),
    Demonstration("POST /v1/orders returned 500 for discount codes.", (("POST /v1/orders", "ENDPOINT"),)),
    Demonstration("Nothing happened on Tuesday.", ()),
]


def _texts(demos: list[Demonstration]) -> list[str]:
    return [demo.text for demo in demos]


def test_similar_picks_the_demonstrations_sharing_words_most_similar_last() -> None:
    chosen = DemoSelector(POOL, k=3).select("Kafka consumer lag after the checkout-service failover")
    assert len(chosen) == 3
    # Both Kafka consumer texts are chosen; the one sharing the most (lag, checkout-service) is last.
    assert chosen[-1] == POOL[1]
    assert chosen[-2] == POOL[4]


def test_similar_is_deterministic_and_ranks_by_similarity() -> None:
    selector = DemoSelector(POOL, k=len(POOL))
    query = "the connection pool: MAX_POOL_SIZE"
    assert selector.select(query) == selector.select(query)
    assert selector.select(query)[-1] == POOL[2]


def test_similar_with_no_shared_words_still_returns_k() -> None:
    assert len(DemoSelector(POOL, k=2).select("zzz qqq")) == 2


def test_random_is_reproducible_for_a_seed_and_differs_across_seeds() -> None:
    def draw(seed: int) -> list[list[str]]:
        selector = DemoSelector(POOL, k=3, strategy="random", rng=np.random.default_rng(seed))
        return [_texts(selector.select(f"query {i}")) for i in range(3)]

    assert draw(7) == draw(7)
    assert draw(7) != draw(8)
    assert all(len(set(texts)) == 3 for texts in draw(7))
    default = DemoSelector(POOL, k=3, strategy="random")
    assert _texts(default.select("query 0")) == draw(0)[0]


@pytest.mark.parametrize("strategy", ["similar", "random"])
def test_k_larger_than_the_pool_returns_the_whole_pool(strategy: DemoStrategy) -> None:
    selector = DemoSelector(POOL[:3], k=10, strategy=strategy)
    assert sorted(_texts(selector.select("anything"))) == sorted(_texts(POOL[:3]))


@pytest.mark.parametrize("strategy", ["similar", "random"])
def test_empty_pool_and_k_zero_give_zero_shot(strategy: DemoStrategy) -> None:
    assert DemoSelector([], strategy=strategy).select("Kafka is down") == []
    assert DemoSelector(POOL, k=0, strategy=strategy).select("Kafka is down") == []


@pytest.mark.parametrize("strategy", ["similar", "random"])
def test_never_returns_the_query_itself(strategy: DemoStrategy) -> None:
    selector = DemoSelector(POOL, k=len(POOL), strategy=strategy)
    for demo in POOL:
        chosen = _texts(selector.select(demo.text))
        assert demo.text not in chosen
        assert len(chosen) == len(POOL) - 1
    assert DemoSelector(POOL[:1], k=3, strategy=strategy).select(POOL[0].text + "\n") == []


def test_pool_without_any_word_does_not_break_similar() -> None:
    pool = [Demonstration("", ()), Demonstration("!!", ())]
    assert len(DemoSelector(pool, k=5).select("Kafka")) == 2


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="k must be"):
        DemoSelector(POOL, k=-1)
    with pytest.raises(ValueError, match="unknown demonstration strategy"):
        DemoSelector(POOL, strategy="nearest")  # type: ignore[arg-type]
