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


def ranked_batch(uncertainty: Rows, vectors: Rows, *, n: int, labelled: Rows | None = None) -> list[int]:
    """Ranked batch-mode sampling (Cardoso et al. 2017, Information Sciences 379), by ``modAL.batch.ranked_batch``.

    Docs are picked one at a time by ``alpha * (1 - 1 / (1 + d)) + (1 - alpha) * uncertainty``, where ``d`` is the
    cosine distance to the nearest labelled or already-picked doc and ``alpha = |U| / (|U| + |D|)`` (unlabelled
    docs still to rank over those plus the labelled and picked ones: diversity first while little is labelled).
    With no labelled doc the first pick is the pool's most central doc (modAL's cold start), and it is then out
    of the pool (modAL 0.4.2 leaves it in and can pick it twice).

    Args:
        uncertainty: ``(n_pool,)`` doc scores (higher: more worth labelling).
        vectors: ``(n_pool, dim)`` doc embeddings, non-zero.
        n: Batch size, at least 1.
        labelled: ``(n_labelled, dim)`` embeddings of the labelled docs, or None (none, or not known).

    Returns:
        Positions into the pool, best first (``min(n, n_pool)`` of them).
    """
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
