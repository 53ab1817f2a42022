"""The figures of an evaluation, per entity type and averaged.

Plain dataclasses without spaCy or numpy, so that stored metrics (``ml.model_meta``) are read without loading a model
library. ``ml.evaluation`` computes them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PRF:
    """Precision, recall and F1."""

    precision: float
    recall: float
    f1: float

    @classmethod
    def of(cls, tp: float, n_pred: float, n_gold: float) -> PRF:
        """From true positives and the predicted and gold counts (0 when undefined)."""
        p = tp / n_pred if n_pred else 0.0
        r = tp / n_gold if n_gold else 0.0
        return cls(p, r, 2 * p * r / (p + r) if p + r else 0.0)


@dataclass(frozen=True)
class TypeScore:
    """The scores of one entity type, with the 95% bootstrap interval of its exact F1 (None: not computed)."""

    label: str
    precision: float
    recall: float
    f1: float
    partial_f1: float
    support: int
    predicted: int
    meets_target: bool
    f1_interval: tuple[float, float] | None = None
    # enough gold spans (``min_support``) for the F1 to mean something; below, it is shown as "not yet measurable"
    measurable: bool = True
