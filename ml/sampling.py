"""Active-learning selection: score each unlabelled doc's uncertainty, then choose a batch (pure functions).

Scoring is separate from selection (modAL's split): a strategy from ``uncertainty_strategies`` turns a
``DocUncertainty`` into a number in [0, 1], and ``select_batch`` chooses among the scores, optionally
weighting under-performing entity types and rewarding diversity. The measures are modAL's
(``modAL.uncertainty``) and the diverse batch is modAL's ranked batch sampling (``modAL.batch``), through
``ml.modal_adapter``; where nerloop does otherwise, the line says why. Randomness only ever comes in as an
explicit ``numpy.random.Generator``.

Docs with no predicted entity and no token signal give a strategy nothing to measure. They score the
``empty`` base uncertainty (0.0 by default, so they rank last); raise it to keep some "the model found
nothing here" docs in the batch, since a missed entity is exactly what a blank prediction hides.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from ml import modal_adapter
from ml.errors import EmptyPoolError, UnknownStrategyError
from ml.prediction import ScoredSpan

_NAME = re.compile(r"^[a-z][a-z0-9_]*\.v[0-9]+$")


@dataclass(frozen=True)
class DocUncertainty:
    """What the model says about one unlabelled doc.

    ``span_scores[i]`` is the probability of the i-th predicted entity, ``span_labels[i]`` its label.
    ``token_best`` / ``token_second`` are, per token, the probabilities of the best and second-best tag;
    both are empty when the model has no token probabilities.
    """

    doc_id: int
    span_scores: tuple[float, ...]
    span_labels: tuple[str, ...]
    token_best: tuple[float, ...] = ()
    token_second: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        where = f"doc {self.doc_id}"
        if len(self.span_scores) != len(self.span_labels):
            raise ValueError(f"{where}: {len(self.span_scores)} span scores but {len(self.span_labels)} labels")
        if len(self.token_best) != len(self.token_second):
            raise ValueError(f"{where}: token_best and token_second must have one value per token each")
        for name, values in (
            ("span_scores", self.span_scores),
            ("token_best", self.token_best),
            ("token_second", self.token_second),
        ):
            bad = [p for p in values if not 0.0 <= p <= 1.0]  # also rejects NaN
            if bad:
                raise ValueError(f"{where}: {name} must be probabilities in [0, 1], got {bad[0]!r}")
        if any(s > b for b, s in zip(self.token_best, self.token_second, strict=True)):
            raise ValueError(f"{where}: a token's second-best probability exceeds its best; pass them in order")


class UncertaintyStrategy(Protocol):
    """Maps one doc to an uncertainty in [0, 1] (higher: more worth labelling)."""

    def __call__(self, doc: DocUncertainty, *, empty: float = ...) -> float:
        """Score one doc; ``empty`` is the score of a doc with no signal at all."""
        ...


class StrategyRegistry:
    """Named, versioned uncertainty strategies. A published ``name.vN`` never changes; add ``.vN+1``."""

    def __init__(self) -> None:
        self._strategies: dict[str, UncertaintyStrategy] = {}

    def register(self, name: str) -> Callable[[UncertaintyStrategy], UncertaintyStrategy]:
        """Decorator that registers a strategy under ``name`` (``name.vN``, not yet taken)."""
        if not _NAME.match(name):
            raise ValueError(f"strategy name {name!r} must look like 'least_confidence.v1'")
        if name in self._strategies:
            raise ValueError(f"strategy {name!r} is already registered; publish a new version instead")

        def decorate(strategy: UncertaintyStrategy) -> UncertaintyStrategy:
            self._strategies[name] = strategy
            return strategy

        return decorate

    def get(self, name: str) -> UncertaintyStrategy:
        """The strategy called ``name``; ``UnknownStrategyError`` (listing the known ones) if there is none."""
        try:
            return self._strategies[name]
        except KeyError:
            known = ", ".join(self.names())
            raise UnknownStrategyError(f"unknown uncertainty strategy {name!r}; use one of: {known}") from None

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._strategies)

    def __contains__(self, name: object) -> bool:
        return name in self._strategies


uncertainty_strategies = StrategyRegistry()


def _rows(values: Sequence[float], *, complement: bool) -> NDArray[np.float64]:
    # one row per decision: its probability, and with ``complement`` the rest of its yes/no distribution
    column = np.asarray(values, dtype=np.float64)[:, None]
    return np.hstack([column, 1.0 - column]) if complement else column


@uncertainty_strategies.register("least_confidence.v1")
def least_confidence(doc: DocUncertainty, *, empty: float = 0.0) -> float:
    """1 minus the lowest confidence among the doc's entities and (when given) its tokens' best tags.

    Through ``modAL.uncertainty.classifier_uncertainty`` (1 - the chosen analysis' probability), one row per
    decision holding the chosen analysis' probability alone: a greedy entity can sit below 0.5 in the beam, and
    its uncertainty is that of the prediction made, not ``min(p, 1 - p)``.

    Args:
        doc: The model's output for one doc.
        empty: The score of a doc with no entity and no token signal.

    Returns:
        The uncertainty, in [0, 1].
    """
    signals = doc.span_scores + doc.token_best
    if not signals:
        return empty
    return float(modal_adapter.least_confidence(_rows(signals, complement=False)).max())


@uncertainty_strategies.register("margin.v1")
def margin(doc: DocUncertainty, *, empty: float = 0.0) -> float:
    """1 minus the smallest margin: best minus second-best tag per token, else ``|2p - 1|`` per entity.

    An entity is a yes/no event, so its margin is ``p - (1 - p)``; an entity at p = 0.5 is maximally
    uncertain. Token probabilities, when given, are the finer signal and replace the entity scores.
    Each margin is ``modAL.uncertainty.classifier_margin`` of the decision's row.

    Args:
        doc: The model's output for one doc.
        empty: The score of a doc with no entity and no token signal.

    Returns:
        The uncertainty, in [0, 1].
    """
    if doc.token_best:
        rows = np.column_stack([np.asarray(doc.token_best), np.asarray(doc.token_second)]).astype(np.float64)
    elif doc.span_scores:
        rows = _rows(doc.span_scores, complement=True)
    else:
        return empty
    return float(np.clip(1.0 - modal_adapter.margin(rows).min(), 0.0, 1.0))


@uncertainty_strategies.register("entropy.v1")
def entropy(doc: DocUncertainty, *, empty: float = 0.0) -> float:
    """The largest binary entropy ``H(p)`` (bits) over the doc's entity scores and tokens' best-tag probabilities.

    For a token, ``p`` is the probability that its best tag is right (a yes/no event). Each entropy is
    ``modAL.uncertainty.classifier_entropy`` of the row ``(p, 1 - p)``, in bits.

    Args:
        doc: The model's output for one doc.
        empty: The score of a doc with no entity and no token signal.

    Returns:
        The uncertainty, in [0, 1].
    """
    signals = doc.span_scores + doc.token_best
    if not signals:
        return empty
    return float(np.clip(modal_adapter.entropy_bits(_rows(signals, complement=True)).max(), 0.0, 1.0))


def score_pool(
    pool: Sequence[DocUncertainty], *, strategy: str = "least_confidence.v1", empty: float = 0.0
) -> dict[int, float]:
    """Score every doc of an unlabelled pool with one registered strategy.

    Args:
        pool: One entry per unlabelled doc (distinct ``doc_id``).
        strategy: A name in ``uncertainty_strategies``.
        empty: The base uncertainty of docs with no predicted entity and no token signal, in [0, 1].

    Returns:
        Uncertainty in [0, 1] per doc id.

    Raises:
        EmptyPoolError: The pool is empty.
        UnknownStrategyError: ``strategy`` is not registered.
    """
    if not pool:
        raise EmptyPoolError("cannot score an empty pool; import unlabelled tasks first")
    score = uncertainty_strategies.get(strategy)
    if not 0.0 <= empty <= 1.0:
        raise ValueError(f"empty must be in [0, 1], got {empty!r}")
    scores = {doc.doc_id: score(doc, empty=empty) for doc in pool}
    if len(scores) != len(pool):
        raise ValueError("the pool holds the same doc_id twice; pass each doc once")
    return scores


def uncertainty_from_spans(doc_id: int, spans: Sequence[ScoredSpan]) -> DocUncertainty:
    """Adapt a model's predictions for one doc (``NERModel.predict``) to a ``DocUncertainty``.

    Args:
        doc_id: The caller's id for the doc (the task id).
        spans: The doc's predicted entities with their scores.

    Returns:
        The doc's entity scores and labels, without token signal.
    """
    scores = tuple(_clip_rounding(s.score) for s in spans)
    return DocUncertainty(doc_id=doc_id, span_scores=scores, span_labels=tuple(s.label for s in spans))


def _clip_rounding(p: float) -> float:
    # float32 models can round a probability a hair outside [0, 1]; anything further out is still rejected.
    return min(1.0, max(0.0, p)) if -1e-6 <= p <= 1.0 + 1e-6 else p


def type_weights_from_f1(per_type_f1: Mapping[str, float], *, target: float = 0.85) -> dict[str, float]:
    """Weight each entity type by how far its F1 is below the target: ``1 + max(0, target - f1) / target``.

    Args:
        per_type_f1: Dev F1 per entity type, each in [0, 1].
        target: The project's F1 target, in (0, 1].

    Returns:
        A weight in [1, 2] per type (1: at or above target; 2: F1 of 0).
    """
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target must be in (0, 1], got {target!r}")
    bad = {label: f1 for label, f1 in per_type_f1.items() if not 0.0 <= f1 <= 1.0}
    if bad:
        raise ValueError(f"F1 scores must be in [0, 1], got {bad}")
    return {label: 1.0 + max(0.0, target - f1) / target for label, f1 in per_type_f1.items()}


def select_random(doc_ids: Sequence[int], *, n: int, rng: np.random.Generator) -> list[int]:
    """The random baseline: ``n`` distinct doc ids drawn uniformly (all of them, shuffled, if fewer).

    Args:
        doc_ids: The pool (distinct ids; their order does not matter).
        n: How many to draw, at least 1.
        rng: The only source of randomness.

    Returns:
        The drawn ids, in draw order.

    Raises:
        EmptyPoolError: The pool is empty.
    """
    _check_n(n)
    if not doc_ids:
        raise EmptyPoolError("cannot sample from an empty pool; import unlabelled tasks first")
    ordered = sorted(set(doc_ids))
    if len(ordered) != len(doc_ids):
        raise ValueError("doc_ids holds the same id twice; pass each doc once")
    return [ordered[i] for i in rng.permutation(len(ordered))[:n]]


def select_batch(
    scores: Mapping[int, float],
    *,
    n: int,
    rng: np.random.Generator,
    embeddings: Mapping[int, NDArray[np.float64]] | None = None,
    type_weights: Mapping[str, float] | None = None,
    labels_of: Mapping[int, Sequence[str]] | None = None,
    diversity: float | None = 0.5,
    labelled: Sequence[NDArray[np.float64]] | None = None,
    unlabelled_count: int | None = None,
    labelled_count: int | None = None,
) -> list[int]:
    """Choose a batch of docs to label: the most uncertain, optionally weighted by type and spread out.

    Each doc's uncertainty is first multiplied by the largest ``type_weights`` entry over the labels
    predicted in it (``labels_of``; 1 for a doc without labels or with only unweighted ones), then divided by
    the largest weight (at least 1), so the weighted uncertainty stays in [0, 1] and never swamps the distance
    term. Without ``embeddings`` the batch is the top ``n``. With them, docs are picked greedily, one at a time,
    trading uncertainty against the distance to the nearest doc labelled (``labelled``) or picked before: the
    ranked batch-mode sampling of Cardoso et al. (2017), "Ranked batch-mode active learning", Information
    Sciences 379. Both trade-offs score ``(1 - alpha) * uncertainty + alpha * (1 - 1 / (1 + d))``, ``d`` the
    cosine distance in [0, 2] (modAL's similarity ``1 / (1 + d)``; the term is in [0, 2/3]):

    - ``diversity=None``: ``modAL.batch.ranked_batch`` itself (``ml.modal_adapter.ranked_batch``), alpha
      ``|U| / (|U| + |D|)`` over the true counts ``unlabelled_count`` / ``labelled_count`` (the pool and the
      labelled docs may be samples of them), cold start on the most central doc;
    - a number (0.5 unless given): that fixed alpha; the first pick without labelled docs is the most uncertain.

    Args:
        scores: Uncertainty per doc id (for example from ``score_pool``).
        n: Batch size, at least 1; a larger ``n`` returns the whole pool, ranked.
        rng: Breaks ties (the only source of randomness): the pool is shuffled by it before ranking.
        embeddings: A vector per doc id (all of the same size, non-zero); enables diversity.
        type_weights: A weight per entity type (for example from ``type_weights_from_f1``).
        labels_of: The labels predicted in each doc; required with ``type_weights``.
        diversity: The fixed alpha in [0, 1] (0 ranks by uncertainty alone; default 0.5), or None for modAL's
            adaptive ``|U| / (|U| + |D|)``. Pass it explicitly: the default is kept for existing callers.
        labelled: Vectors of docs already labelled (same size as ``embeddings``); the batch keeps away from them.
        unlabelled_count: ``|U|``, the unlabelled docs ``scores`` were drawn from (default: ``len(scores)``); with
            ``diversity=None`` only.
        labelled_count: ``|D|``, the labelled docs ``labelled`` were drawn from (default: ``len(labelled)``);
            with ``diversity=None`` only.

    Returns:
        The chosen doc ids, best first.

    Raises:
        EmptyPoolError: ``scores`` is empty.
        ValueError: Bad ``n``, ``diversity``, scores, weights, embeddings or counts (the message says which).
    """
    _check_n(n)
    if not scores:
        raise EmptyPoolError("cannot select from an empty pool; score the unlabelled tasks first")
    if diversity is not None and not 0.0 <= diversity <= 1.0:
        raise ValueError(f"diversity must be in [0, 1] or None (modAL's adaptive trade-off), got {diversity!r}")
    ids = sorted(scores)
    ids = [ids[i] for i in rng.permutation(len(ids))]  # this order breaks every tie
    weighted = np.array(_weighted(scores, ids, type_weights=type_weights, labels_of=labels_of))
    if embeddings is None:
        # not modAL's multi_argmax: it returns the top n unordered, and the queue needs them ranked
        ranked = [int(i) for i in np.argsort(-weighted, kind="stable")[:n]]
    else:
        unit = _unit_rows(ids, embeddings)
        reference = _reference(labelled, unit.shape[1])
        if diversity is None:
            ranked = modal_adapter.ranked_batch(
                weighted,
                unit,
                n=n,
                labelled=reference,
                unlabelled_total=unlabelled_count,
                labelled_total=labelled_count,
            )
        else:  # modAL's ranked_batch fixes alpha to |U| / (|U| + |D|): a chosen alpha needs this loop
            ranked = _ranked_batch(weighted, unit, n=n, diversity=diversity, reference=reference)
    return [ids[i] for i in ranked]


def _reference(labelled: Sequence[NDArray[np.float64]] | None, size: int) -> NDArray[np.float64] | None:
    if labelled is None or len(labelled) == 0:
        return None
    rows = _unit_rows(range(len(labelled)), dict(enumerate(labelled)))
    if rows.shape[1] != size:
        raise ValueError(f"labelled vectors have {rows.shape[1]} dimensions, the pool's {size}; use one model")
    return rows


def _check_n(n: int) -> None:
    if n <= 0:
        raise ValueError(f"n must be at least 1, got {n}")


def _weighted(
    scores: Mapping[int, float],
    ids: Sequence[int],
    *,
    type_weights: Mapping[str, float] | None,
    labels_of: Mapping[int, Sequence[str]] | None,
) -> list[float]:
    bad = [doc_id for doc_id in ids if not math.isfinite(scores[doc_id])]
    if bad:
        raise ValueError(f"scores must be finite numbers; doc {bad[0]} has {scores[bad[0]]!r}")
    if type_weights is None:
        return [scores[doc_id] for doc_id in ids]
    if labels_of is None:
        raise ValueError("type_weights needs labels_of (the labels predicted in each doc)")
    if not all(math.isfinite(w) and w > 0.0 for w in type_weights.values()):
        raise ValueError(f"type weights must be positive finite numbers, got {dict(type_weights)}")
    top = max(1.0, *type_weights.values())  # the largest weighted score a doc at uncertainty 1 can get
    out = []
    for doc_id in ids:
        weights = [type_weights.get(label, 1.0) for label in labels_of.get(doc_id, ())]
        out.append(scores[doc_id] * max(weights, default=1.0) / top)
    return out


def _unit_rows(ids: Iterable[int], embeddings: Mapping[int, NDArray[np.float64]]) -> NDArray[np.float64]:
    ids = list(ids)
    missing = [doc_id for doc_id in ids if doc_id not in embeddings]
    if missing:
        raise ValueError(f"no embedding for doc ids {sorted(missing)[:10]}; pass one per scored doc")
    rows = [np.asarray(embeddings[doc_id], dtype=np.float64).ravel() for doc_id in ids]
    if len({row.shape for row in rows}) != 1:
        raise ValueError("embeddings differ in size; embed every doc with the same model")
    matrix = np.stack(rows)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    if not np.all(np.isfinite(norms)) or np.any(norms == 0.0):
        raise ValueError("every embedding must be finite and non-zero (cosine distance is undefined otherwise)")
    unit: NDArray[np.float64] = matrix / norms
    return unit


def _ranked_batch(
    uncertainty: NDArray[np.float64],
    unit: NDArray[np.float64],
    *,
    n: int,
    diversity: float,
    reference: NDArray[np.float64] | None,
) -> list[int]:
    # np.argmax takes the first maximum, so ties go to the earlier position in the caller's shuffled order.
    # the same scale as modAL's adaptive trade-off: the distance term is 1 - 1 / (1 + d) (modal_adapter.dissimilarity)
    base = (1.0 - diversity) * uncertainty
    if reference is None:
        picks = [int(np.argmax(uncertainty))]
        nearest = np.clip(1.0 - unit @ unit[picks[0]], 0.0, 2.0)
    else:
        picks = []
        nearest = np.clip(1.0 - unit @ reference.T, 0.0, 2.0).min(axis=1)
    while len(picks) < min(n, len(uncertainty)):
        combined = base + diversity * modal_adapter.dissimilarity(nearest)
        combined[picks] = -np.inf
        best = int(np.argmax(combined))
        picks.append(best)
        nearest = np.minimum(nearest, np.clip(1.0 - unit @ unit[best], 0.0, 2.0))
    return picks
