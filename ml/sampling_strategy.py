"""A project's sampling strategy (measure, diversity, per-type weights) and the one function that applies it.

The loop (``backend.services.scoring``) and the simulation (``bench/simulate.py``) both choose their batch through
``choose_batch``, so what the benchmark measures is what the product does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from ml.sampling import DocUncertainty, score_pool, select_batch, type_weights_from_f1

Measure = Literal["least_confidence", "margin", "entropy"]
Representation = Literal["model", "minilm"]
MEASURES: tuple[str, ...] = ("least_confidence", "margin", "entropy")
# the registered version each measure name resolves to (``ml.sampling.uncertainty_strategies``)
MEASURE_VERSIONS: dict[str, str] = {m: f"{m}.v1" for m in MEASURES}
# with diversity, the most uncertain docs that enter the ranked batch (see ``choose_batch``)
DIVERSITY_CANDIDATES = 2000


class SamplingStrategy(BaseModel):
    """How a project chooses the next batch to label.

    ``measure``: the uncertainty measure (modAL's least confidence, margin or entropy over the model's decisions).
    ``diversity``: rank the batch with modAL's ranked batch sampling over doc vectors (Cardoso et al. 2017) instead
    of by uncertainty alone. ``diversity_weight``: None for modAL's own trade-off ``|U| / (|U| + |D|)`` (the
    project's unlabelled and labelled counts), else a fixed alpha in [0, 1]; both weigh the same distance term
    ``1 - 1 / (1 + d)``. ``representation``: the doc vectors: ``model`` (the serving model's own: spaCy's
    ``tok2vec`` output mean, the transformer's last hidden state mean) or ``minilm`` (all-MiniLM-L6-v2 sentence
    embeddings). ``type_weights``: weight each doc by its weakest predicted type's distance to the F1 target
    (``ml.sampling.type_weights_from_f1``). ``weights``: per-type weights set by hand, over the computed ones.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    measure: Measure = "least_confidence"
    diversity: bool = False
    diversity_weight: float | None = Field(default=None, ge=0.0, le=1.0)
    representation: Representation = "model"
    type_weights: bool = True
    weights: dict[str, float] = Field(default_factory=dict)

    def describe(self) -> str:
        """One line: ``margin + diversity (modAL alpha, model vectors) + type weights``."""
        parts: list[str] = [self.measure]
        if self.diversity:
            alpha = "modAL alpha" if self.diversity_weight is None else f"alpha {self.diversity_weight:g}"
            parts.append(f"diversity ({alpha}, {self.representation} vectors)")
        if self.type_weights:
            parts.append("type weights")
        if self.weights:
            parts.append("weights " + ", ".join(f"{k}={v:g}" for k, v in sorted(self.weights.items())))
        return " + ".join(parts)


@dataclass(frozen=True)
class Choice:
    """A chosen batch and what it was chosen on.

    ``batch``: doc ids, best first. ``uncertainty``: the measure's score per doc id, in [0, 1].
    ``weights``: the per-type weights applied (empty: none).
    """

    batch: list[int]
    uncertainty: dict[int, float]
    weights: dict[str, float]


def type_weights_for(
    strategy: SamplingStrategy, per_type_f1: Mapping[str, float], *, target: float
) -> dict[str, float]:
    """The per-type weights a strategy applies: from the F1 gap (if on), then the hand-set ones over them."""
    computed = type_weights_from_f1(per_type_f1, target=target) if strategy.type_weights else {}
    bad = {k: v for k, v in strategy.weights.items() if not (np.isfinite(v) and v > 0)}
    if bad:
        raise ValueError(f"hand-set type weights must be positive numbers, got {bad}")
    return computed | dict(strategy.weights)


def choose_batch(
    strategy: SamplingStrategy,
    pool: Sequence[DocUncertainty],
    *,
    n: int,
    rng: np.random.Generator,
    per_type_f1: Mapping[str, float],
    target: float,
    vectors: Mapping[int, NDArray[np.float64]] | None = None,
    labelled: Sequence[NDArray[np.float64]] | None = None,
    labelled_count: int | None = None,
    candidates: int = DIVERSITY_CANDIDATES,
) -> Choice:
    """Score a pool with the strategy's measure and choose its batch.

    Args:
        strategy: The project's strategy.
        pool: One entry per candidate doc (distinct ``doc_id``), its ``span_labels`` the types predicted in it.
        n: Batch size, at least 1.
        rng: The only source of randomness (ties).
        per_type_f1: Held-out F1 per type of the model that scored the pool (types with support only).
        target: The project's F1 target, in (0, 1].
        vectors: A vector per doc id; required when ``strategy.diversity`` is on.
        labelled: Vectors of the labelled docs (diversity keeps the batch away from them); may be the latest few.
        labelled_count: How many docs are labelled in all (``|D|`` of modAL's trade-off; default:
            ``len(labelled)``). ``|U|`` is ``len(pool)``, whatever ``candidates`` keeps.
        candidates: With diversity, only this many of the most uncertain docs are ranked (modAL's cold start
            measures every pair of them; each pick measures each against every labelled and picked doc).

    Returns:
        The batch, the uncertainty per doc id and the weights applied.

    Raises:
        EmptyPoolError: The pool is empty.
        ValueError: Diversity is on and no vectors were given, or a bad input (the message says which).
    """
    uncertainty = score_pool(pool, strategy=MEASURE_VERSIONS[strategy.measure])
    weights = type_weights_for(strategy, per_type_f1, target=target)
    if strategy.diversity and vectors is None:
        raise ValueError("diversity is on but no doc vectors were given; embed the pool first")
    ranked_on = uncertainty
    if strategy.diversity and len(uncertainty) > candidates:
        top = sorted(uncertainty, key=lambda doc_id: (-uncertainty[doc_id], doc_id))[:candidates]
        ranked_on = {doc_id: uncertainty[doc_id] for doc_id in top}
    batch = select_batch(
        ranked_on,
        n=n,
        rng=rng,
        embeddings=vectors if strategy.diversity else None,
        type_weights=weights or None,
        labels_of={doc.doc_id: list(doc.span_labels) for doc in pool} if weights else None,
        diversity=strategy.diversity_weight,
        labelled=labelled if strategy.diversity else None,
        unlabelled_count=len(pool) if strategy.diversity_weight is None else None,
        labelled_count=labelled_count if strategy.diversity_weight is None else None,
    )
    return Choice(batch, uncertainty, weights)
