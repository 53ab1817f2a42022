"""modAL's own query strategies and nerloop's selection choose the same batch on the same inputs.

The modAL side is modAL end to end: an ``ActiveLearner`` (fitted on the labelled docs' vectors) queried with
``modAL.batch.uncertainty_batch_sampling`` (ranked batch, diversity on) or ``modAL.uncertainty.*_sampling``
(diversity off). Its estimator's ``predict_proba`` gives, per doc, the distribution of the doc's least certain
decision, which is what nerloop scores a doc by. The nerloop side is the product's path: ``DocUncertainty`` per
doc, ``score_pool`` with the registered measure, ``select_batch``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from modAL.batch import uncertainty_batch_sampling
from modAL.models import ActiveLearner
from modAL.uncertainty import entropy_sampling, margin_sampling, uncertainty_sampling
from numpy.typing import NDArray

from ml import modal_adapter
from ml.sampling import DocUncertainty, score_pool, select_batch

Rows = NDArray[np.float64]


class DocDistributions:
    """An estimator whose ``predict_proba`` looks each doc vector up and returns that doc's distribution."""

    def __init__(self, vectors: Rows, rows: Rows) -> None:
        self._rows = {vector.tobytes(): row for vector, row in zip(vectors, rows, strict=True)}

    def fit(self, x: Rows, y: Any) -> DocDistributions:
        return self

    def predict_proba(self, x: Rows) -> Rows:
        return np.stack([self._rows[vector.tobytes()] for vector in x])


def _token_pool(rng: np.random.Generator, size: int) -> tuple[list[DocUncertainty], Rows, Rows, Rows]:
    """Docs of 1-6 tokens, each a Dirichlet distribution over 5 tags.

    Per doc its least confident and its smallest-margin token's distribution; and a vector per doc.
    """
    docs, least, smallest = [], [], []
    for doc_id in range(size):
        tokens = -np.sort(-rng.dirichlet(np.full(5, 0.6), size=int(rng.integers(1, 7))), axis=1)
        docs.append(DocUncertainty(doc_id, (), (), tuple(tokens[:, 0]), tuple(tokens[:, 1])))
        least.append(tokens[np.argmin(tokens[:, 0])])
        smallest.append(tokens[np.argmin(tokens[:, 0] - tokens[:, 1])])
    return docs, np.array(least), np.array(smallest), rng.normal(size=(size, 8))


def _span_pool(rng: np.random.Generator, size: int) -> tuple[list[DocUncertainty], Rows]:
    """Docs of 1-4 entities with their probabilities; per doc the (p, 1 - p) row of its most uncertain entity."""
    docs, rows = [], []
    for doc_id in range(size):
        scores = rng.uniform(0.05, 0.999, size=int(rng.integers(1, 5)))
        docs.append(DocUncertainty(doc_id, tuple(scores), ("ORG",) * len(scores)))
        p = scores[np.argmin(np.abs(scores - 0.5))]
        rows.append([p, 1.0 - p])
    return docs, np.array(rows)


def _learner(vectors: Rows, rows: Rows, labelled: Rows) -> ActiveLearner:
    return ActiveLearner(
        estimator=DocDistributions(vectors, rows),
        query_strategy=uncertainty_batch_sampling,
        X_training=labelled,
        y_training=np.zeros(len(labelled)),
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranked_batch_least_confidence_is_modal_s(seed: int) -> None:
    rng = np.random.default_rng(seed)
    docs, least, _, vectors = _token_pool(rng, 80)
    labelled = rng.normal(size=(15, 8))
    learner = _learner(vectors, least, labelled)
    theirs = learner.query(vectors, n_instances=10, metric="cosine")[0]

    scores = score_pool(docs, strategy="least_confidence.v1")
    ours = select_batch(
        scores,
        n=10,
        rng=np.random.default_rng(seed),
        embeddings=dict(enumerate(vectors)),
        labelled=list(labelled),
        diversity=None,
    )
    assert ours == [int(i) for i in theirs]


def test_ranked_batch_cold_start_is_modal_s() -> None:
    # nerloop masks modAL's cold-start pick out of the pool (modAL 0.4.2 can pick it twice); where modAL does not,
    # both choose the same batch
    rng = np.random.default_rng(7)
    docs, least, _, vectors = _token_pool(rng, 40)
    learner = ActiveLearner(estimator=DocDistributions(vectors, least), query_strategy=uncertainty_batch_sampling)
    theirs = learner.query(vectors, n_instances=6, metric="cosine")[0]
    ours = select_batch(
        score_pool(docs, strategy="least_confidence.v1"),
        n=6,
        rng=np.random.default_rng(0),
        embeddings=dict(enumerate(vectors)),
        diversity=None,
    )
    assert ours == [int(i) for i in theirs]


@pytest.mark.parametrize("seed", [0, 1])
def test_top_n_by_each_measure_is_modal_s(seed: int) -> None:
    rng = np.random.default_rng(seed)
    docs, least, smallest, vectors = _token_pool(rng, 60)
    span_docs, span_rows = _span_pool(rng, 60)
    cases = [
        (docs, least, uncertainty_sampling, "least_confidence.v1"),
        (docs, smallest, margin_sampling, "margin.v1"),
        (span_docs, span_rows, entropy_sampling, "entropy.v1"),
        (span_docs, span_rows, margin_sampling, "margin.v1"),
    ]
    for pool, rows, query, measure in cases:
        learner = ActiveLearner(estimator=DocDistributions(vectors, rows), query_strategy=query)
        theirs = learner.query(vectors, n_instances=8)[0]
        ours = select_batch(score_pool(pool, strategy=measure), n=8, rng=np.random.default_rng(seed))
        # modAL's multi_argmax returns the top n unordered; nerloop ranks them, best first
        assert set(ours) == {int(i) for i in theirs}, measure


@pytest.mark.parametrize(("seed", "labelled_size"), [(0, 15), (1, 0)])
def test_the_counted_steps_are_modal_s_when_the_counts_are_the_arrays(seed: int, labelled_size: int) -> None:
    """The loop that takes |U| and |D| from the caller (a sample of the pool) is modAL's when they are the arrays'."""
    rng = np.random.default_rng(seed)
    _, least, _, vectors = _token_pool(rng, 60)
    uncertainty = 1.0 - least.max(axis=1)
    labelled = rng.normal(size=(labelled_size, 8)) if labelled_size else None
    theirs = modal_adapter.ranked_batch(uncertainty, vectors, n=8, labelled=labelled)
    ours = modal_adapter._ranked_batch_counted(
        uncertainty, vectors, n=8, labelled=labelled, totals=(len(vectors), labelled_size)
    )
    assert ours == theirs


def test_alpha_follows_the_true_counts_not_the_sample() -> None:
    """Ranking 30 candidates of a larger pool against 5 of many labelled docs.

    Alpha is |U| / (|U| + |D|) of the project, so a huge labelled set ranks by uncertainty and a huge pool by distance,
    whatever the sample's sizes.
    """
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(30, 8))
    uncertainty = rng.uniform(size=30)
    labelled = rng.normal(size=(5, 8))
    sample = modal_adapter.ranked_batch(uncertainty, vectors, n=6, labelled=labelled)
    many_labelled = modal_adapter.ranked_batch(uncertainty, vectors, n=6, labelled=labelled, labelled_total=10**7)
    many_unlabelled = modal_adapter.ranked_batch(uncertainty, vectors, n=6, labelled=labelled, unlabelled_total=10**7)
    assert many_labelled == [int(i) for i in np.argsort(-uncertainty)[:6]]  # alpha ~ 0: uncertainty alone
    by_distance = modal_adapter.ranked_batch(np.zeros(30), vectors, n=6, labelled=labelled)
    assert many_unlabelled == by_distance  # alpha ~ 1: distance alone
    assert sample not in (many_labelled, many_unlabelled)
    with pytest.raises(ValueError, match="full counts"):
        modal_adapter.ranked_batch(uncertainty, vectors, n=6, labelled=labelled, labelled_total=2)
