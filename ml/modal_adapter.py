"""modAL's uncertainty measures and ranked batch sampling, fed with what an NER model already computed.

modAL (Danka and Horvath, 2018, https://modal-python.readthedocs.io) measures a *classifier* through its
``predict_proba`` over *samples*. An NER doc is many small decisions, not one: its predicted entities (a yes/no event
each, with the probability from spaCy's beam parses or the token classifier) and, when the model has them, its
tokens (a distribution over tags). The adapter hands modAL each decision as a sample: one row per decision holding
the model's distribution over its analyses, served by ``UnitDistributions.predict_proba`` (the model has already
run, so the rows are given, not recomputed). ``ml.sampling``'s strategies reduce the per-decision values to a doc
score; ``ranked_batch`` hands modAL the doc scores and embeddings for Cardoso et al.'s ranked batch sampling.
"""

from __future__ import annotations

import math

import numpy as np
from modAL.batch import ranked_batch as modal_ranked_batch
from modAL.batch import select_cold_start_instance, select_instance
from modAL.uncertainty import classifier_entropy, classifier_margin, classifier_uncertainty
from numpy.typing import NDArray

Rows = NDArray[np.float64]


class UnitDistributions:
    """The "classifier" modAL's measures call: ``predict_proba(rows)`` returns the rows it is given.

    Each row is one decision's distribution over its analyses, already computed by the NER model (shape
    ``(n_decisions, n_analyses)``, each row's values in [0, 1]).
    """

    def predict_proba(self, rows: Rows) -> Rows:
        """The rows themselves: the model's probabilities, computed when it predicted."""
        return rows


_UNITS = UnitDistributions()


def least_confidence(rows: Rows) -> Rows:
    """Per row, 1 minus its largest probability: ``modAL.uncertainty.classifier_uncertainty`` (Settles 2009, 2.1).

    Args:
        rows: ``(n, k)`` probabilities, the analysis the model chose having the largest entry of its row.

    Returns:
        ``(n,)`` uncertainties in [0, 1].
    """
    return np.asarray(classifier_uncertainty(_UNITS, rows), dtype=np.float64)


def margin(rows: Rows) -> Rows:
    """Per row, its best minus its second-best probability: ``modAL.uncertainty.classifier_margin`` (Settles 2.2).

    Args:
        rows: ``(n, k)`` probabilities, ``k >= 2``.

    Returns:
        ``(n,)`` margins in [0, 1] (small: uncertain).
    """
    return np.asarray(classifier_margin(_UNITS, rows), dtype=np.float64)


def entropy_bits(rows: Rows) -> Rows:
    """Per row, its Shannon entropy in bits: ``modAL.uncertainty.classifier_entropy`` (nats) / ln 2 (Settles 2.3).

    Args:
        rows: ``(n, k)`` probability distributions (each row sums to 1).

    Returns:
        ``(n,)`` entropies in [0, log2 k].
    """
    return np.asarray(classifier_entropy(_UNITS, rows), dtype=np.float64) / math.log(2.0)


class _Reference:
    """What ``modAL.batch.ranked_batch`` reads of a learner: the labelled docs' vectors, untransformed."""

    on_transformed = False

    def __init__(self, labelled: Rows | None) -> None:
        self.X_training = labelled


def dissimilarity(distance: Rows) -> Rows:
    """The diversity term of modAL for a cosine distance ``d`` in [0, 2]: ``1 - 1 / (1 + d)``, in [0, 2/3].

    ``modAL.batch.select_instance`` scores ``alpha * (1 - similarity) + (1 - alpha) * uncertainty`` with
    ``similarity = 1 / (1 + d)``; every diverse batch in nerloop uses this one scale (fixed alpha or not).
    """
    return 1.0 - 1.0 / (1.0 + distance)


def ranked_batch(
    uncertainty: Rows,
    vectors: Rows,
    *,
    n: int,
    labelled: Rows | None = None,
    unlabelled_total: int | None = None,
    labelled_total: int | None = None,
) -> list[int]:
    """Ranked batch-mode sampling (Cardoso et al. 2017, Information Sciences 379), by ``modAL.batch.ranked_batch``.

    Docs are picked one at a time by ``alpha * (1 - 1 / (1 + d)) + (1 - alpha) * uncertainty``, where ``d`` is the
    cosine distance to the nearest labelled or already-picked doc and ``alpha = |U| / (|U| + |D|)`` (unlabelled
    docs still to rank over those plus the labelled and picked ones: diversity first while little is labelled).
    With no labelled doc the first pick is the pool's most central doc (modAL's cold start), and it is then out
    of the pool (modAL 0.4.2 leaves it in and can pick it twice).

    ``|U|`` and ``|D|`` are the project's true counts: when the caller ranks a sample (the most uncertain
    candidates, the latest labelled docs), it passes the full sizes as ``unlabelled_total`` / ``labelled_total``,
    and after ``k`` picks ``alpha = (unlabelled_total - k) / (unlabelled_total + labelled_total)``, which is what
    modAL computes on the full arrays.

    Args:
        uncertainty: ``(n_pool,)`` doc scores in [0, 1] (higher: more worth labelling).
        vectors: ``(n_pool, dim)`` doc embeddings, non-zero.
        n: Batch size, at least 1.
        labelled: ``(n_labelled, dim)`` embeddings of the labelled docs, or None (none, or not known).
        unlabelled_total: The number of unlabelled docs the pool was drawn from (default: ``n_pool``).
        labelled_total: The number of labelled docs ``labelled`` was drawn from (default: ``n_labelled``).

    Returns:
        Positions into the pool, best first (``min(n, n_pool)`` of them).

    Raises:
        ValueError: A total is smaller than the rows given for it.
    """
    n_pool = len(vectors)
    n_labelled = 0 if labelled is None else len(labelled)
    u_total = n_pool if unlabelled_total is None else unlabelled_total
    d_total = n_labelled if labelled_total is None else labelled_total
    if u_total < n_pool or d_total < n_labelled:
        raise ValueError(
            f"unlabelled_total {u_total} / labelled_total {d_total} are below the {n_pool} pool and "
            f"{n_labelled} labelled rows given; pass the full counts"
        )
    if (u_total, d_total) != (n_pool, n_labelled):
        # modAL reads |U| and |D| off the arrays it ranks: a sample of the pool needs the true counts, so its steps here
        return _ranked_batch_counted(uncertainty, vectors, n=n, labelled=labelled, totals=(u_total, d_total))
    if labelled is not None and len(labelled):
        picks, _ = modal_ranked_batch(  # modAL 0.4.2 returns (positions, their uncertainty scores)
            _Reference(labelled),
            unlabeled=vectors,
            uncertainty_scores=uncertainty,
            n_instances=n,
            metric="cosine",
            n_jobs=None,
        )
        return [int(i) for i in picks]
    # modAL 0.4.2's ranked_batch leaves its cold-start pick in the pool (it can be picked twice): the same steps,
    # with that pick masked out
    first, reference = select_cold_start_instance(vectors, metric="cosine", n_jobs=None)
    ranking = [int(first)]
    mask = np.ones(len(vectors), dtype=bool)
    mask[first] = False
    while len(ranking) < min(n, len(vectors)):
        index, picked, mask = select_instance(reference, vectors, uncertainty, mask, metric="cosine", n_jobs=None)
        reference = np.vstack([reference, picked])
        ranking.append(int(index))
    return ranking


def _cosine(rows: Rows, to: Rows) -> Rows:
    # (len(rows), len(to)) cosine distances in [0, 2], as sklearn's "cosine" metric that modAL passes on
    unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    other = to / np.linalg.norm(to, axis=1, keepdims=True)
    distances: Rows = np.clip(1.0 - unit @ other.T, 0.0, 2.0)
    return distances


def _ranked_batch_counted(
    uncertainty: Rows, vectors: Rows, *, n: int, labelled: Rows | None, totals: tuple[int, int]
) -> list[int]:
    """``ranked_batch``'s steps (modAL's cold start, score and argmax) with ``alpha`` from the true counts."""
    u_total, d_total = totals
    if labelled is not None and len(labelled):
        picks: list[int] = []
        nearest = _cosine(vectors, labelled).min(axis=1)
    else:
        first, _ = select_cold_start_instance(vectors, metric="cosine", n_jobs=None)
        picks = [int(first)]
        nearest = _cosine(vectors, vectors[[first]])[:, 0]
    while len(picks) < min(n, len(vectors)):
        alpha = (u_total - len(picks)) / (u_total + d_total)
        scores = alpha * dissimilarity(nearest) + (1.0 - alpha) * uncertainty
        scores[picks] = -np.inf
        best = int(np.argmax(scores))
        picks.append(best)
        nearest = np.minimum(nearest, _cosine(vectors, vectors[[best]])[:, 0])
    return picks
