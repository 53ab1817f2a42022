"""Promotion rule and the frozen dev split (pure functions)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ml.evaluation import EvaluationReport


@dataclass(frozen=True)
class PromotionDecision:
    """Whether a candidate may replace the serving model, and which types would regress."""

    promote: bool
    regressed: dict[str, tuple[float, float]]  # label -> (serving F1, candidate F1)
    reason: str


def decide_promotion(
    candidate: EvaluationReport, serving: EvaluationReport | None, *, tolerance: float = 0.02
) -> PromotionDecision:
    """Promote unless some entity type's exact F1 drops by more than ``tolerance`` on the same dev set.

    Args:
        candidate: The new model's report on the frozen dev split.
        serving: The serving model's report on the same docs (``None``: nothing serves yet).
        tolerance: The largest F1 drop per type that is accepted.

    Returns:
        The decision with the regressed types.
    """
    if serving is None:
        return PromotionDecision(True, {}, "no model serves yet")
    regressed = {
        label: (old.f1, candidate.per_type[label].f1)
        for label, old in serving.per_type.items()
        if old.support > 0 and label in candidate.per_type and candidate.per_type[label].f1 < old.f1 - tolerance
    }
    if regressed:
        worst = ", ".join(f"{k} {a:.3f} -> {b:.3f}" for k, (a, b) in sorted(regressed.items()))
        return PromotionDecision(False, regressed, f"regresses beyond {tolerance:.2f}: {worst}")
    return PromotionDecision(
        True,
        {},
        f"no type drops more than {tolerance:.2f} F1 (micro {serving.micro.f1:.3f} -> {candidate.micro.f1:.3f})",
    )


def in_dev_split(project_key: str, task_id: int, *, fraction: float = 0.2) -> bool:
    """Whether a task belongs to the project's frozen dev split.

    Membership depends only on the project and task ids, never on when or why the task was labelled, so a
    task's role never changes and the dev set stays a random sample (not one chosen by uncertainty).
    """
    digest = hashlib.sha256(f"{project_key}:{task_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction
