"""The promotion gate (a paired bootstrap per entity type) and the roles of held-out tasks (pure functions)."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from ml.evaluation import (
    DEFAULT_BOOTSTRAP,
    EvaluationReport,
    bootstrap_weights,
    percentile_interval,
    prf_of,
    resample,
)

Role = Literal["train", "dev", "test"]


@dataclass(frozen=True)
class TypeComparison:
    """Candidate against serving model on one entity type, on the same test documents.

    ``difference`` is candidate minus serving exact F1; ``interval`` its 95% paired-bootstrap interval.
    """

    label: str
    serving_f1: float
    candidate_f1: float
    difference: float
    interval: tuple[float, float] | None
    support: int
    blocks: bool
    reason: str


@dataclass(frozen=True)
class PromotionDecision:
    """Whether a candidate may replace the serving model, and why, type by type."""

    promote: bool
    regressed: dict[str, tuple[float, float]]  # label -> (serving F1, candidate F1), the types that block
    reason: str
    per_type: dict[str, TypeComparison] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the run's record of the decision)."""
        return asdict(self)


def decide_promotion(
    candidate: EvaluationReport,
    serving: EvaluationReport | None,
    *,
    tolerance: float = 0.02,
    samples: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
) -> PromotionDecision:
    """Promote unless some entity type's exact F1 drops by more than ``tolerance`` beyond the noise.

    Both reports must come from the same test documents (their ``doc_counts``). The documents are resampled with
    replacement ``samples`` times, the same resample for both models (a paired bootstrap: Koehn 2004,
    Berg-Kirkpatrick et al. 2012), and a type blocks only when the whole 95% interval of its F1 difference lies
    below ``-tolerance``: the drop is beyond the tolerance with 95% confidence. A drop that the interval does not
    confirm is reported, not blocking. Types the serving model had no gold span of on these documents never block.

    Args:
        candidate: The new model's report on the test documents.
        serving: The serving model's report on the same documents (``None``: nothing serves yet).
        tolerance: The F1 drop per type that is accepted.
        samples: Bootstrap resamples.
        seed: The resampling seed.

    Returns:
        The decision, with every type's comparison.

    Raises:
        ValueError: the reports were not computed on the same documents and types.
    """
    if serving is None:
        return PromotionDecision(True, {}, "no model serves yet")
    labels = [label for label in serving.labels if label in candidate.per_type]
    if serving.doc_counts is None or candidate.doc_counts is None or serving.n_docs != candidate.n_docs:
        raise ValueError("the gate compares two reports on the same documents, with their per-document counts")
    new = candidate.doc_counts[:, [candidate.labels.index(label) for label in labels]]
    old = serving.doc_counts[:, [serving.labels.index(label) for label in labels]]
    if not np.array_equal(new[..., 3], old[..., 3]):
        raise ValueError("the two reports have different gold spans: they were not computed on the same documents")
    differences = None
    if serving.n_docs > 1 and samples:
        weights = bootstrap_weights(serving.n_docs, samples=samples, seed=seed)
        differences = prf_of(resample(weights, new))[2] - prf_of(resample(weights, old))[2]
    per_type: dict[str, TypeComparison] = {}
    for i, label in enumerate(labels):
        before, after = serving.per_type[label], candidate.per_type[label]
        interval = percentile_interval(differences[:, i]) if differences is not None else None
        difference = after.f1 - before.f1
        if before.support == 0:
            blocks, reason = False, "no gold span on the test documents"
        elif interval is None:
            blocks = difference < -tolerance
            reason = "one test document: no interval, the drop decides"
        else:
            blocks = interval[1] < -tolerance
            if blocks:
                reason = f"drops beyond {tolerance:.2f} with 95% confidence"
            elif difference < -tolerance:
                reason = f"drop within the noise (interval up to {interval[1]:+.3f})"
            else:
                reason = "no drop beyond the tolerance"
        per_type[label] = TypeComparison(
            label, before.f1, after.f1, difference, interval, before.support, blocks, reason
        )
    regressed = {c.label: (c.serving_f1, c.candidate_f1) for c in per_type.values() if c.blocks}
    if regressed:
        worst = ", ".join(
            f"{c.label} {c.serving_f1:.3f} -> {c.candidate_f1:.3f} ({_interval(c.interval)})"
            for c in per_type.values()
            if c.blocks
        )
        return PromotionDecision(False, regressed, f"regresses beyond {tolerance:.2f}: {worst}", per_type)
    noisy = [c.label for c in per_type.values() if c.difference < -tolerance]
    note = f"; drops within the noise: {', '.join(noisy)}" if noisy else ""
    return PromotionDecision(
        True,
        {},
        f"no type drops beyond {tolerance:.2f} with 95% confidence "
        f"(micro {serving.micro.f1:.3f} -> {candidate.micro.f1:.3f}){note}",
        per_type,
    )


def _interval(interval: tuple[float, float] | None) -> str:
    return "no interval" if interval is None else f"95% interval {interval[0]:+.3f} to {interval[1]:+.3f}"


def stable_unit(key: str) -> float:
    """A uniform number in [0, 1) from a string (SHA-256): the same key always gives the same number."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


def in_dev_split(project_key: str, task_id: int, *, fraction: float = 0.2) -> bool:
    """Whether a task is held out (never trained on): the project's frozen evaluation sample.

    Membership depends only on the project and task ids, never on when or why the task was labelled, so a
    task's role never changes and the held-out set stays a random sample (not one chosen by uncertainty).
    """
    return stable_unit(f"{project_key}:{task_id}") < fraction


def held_out_role(project_key: str, task_id: int, *, fraction: float = 0.2) -> Role:
    """A task's role: ``train``, or, held out, ``dev`` or ``test`` (half and half by a second hash).

    Held out is :func:`in_dev_split`. ``dev`` serves checkpoint selection and the calibration fit; ``test`` every figure
    shown: F1 with intervals, ECE, the gate, the forecast. The test documents are touched by nothing that shapes the
    model, so its figures are not optimistic; the split is by hash rather than cross-fitted so that a task's role never
    changes as labels grow.
    """
    if not in_dev_split(project_key, task_id, fraction=fraction):
        return "train"
    return "test" if stable_unit(f"{project_key}:{task_id}:test") < 0.5 else "dev"
