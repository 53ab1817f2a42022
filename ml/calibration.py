"""Post-hoc calibration of entity confidences (Platt scaling), fitted on the dev split.

A raw beam or token probability ranks entities well but is over-confident. Platt scaling maps
``logit(score)`` through a fitted logistic curve so that a 0.8 means right about 80% of the time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from sklearn.linear_model import LogisticRegression
from spacy.tokens import Doc

from ml.prediction import NERModel, ScoredSpan, WrappedModel

_EPS = 1e-6
# Fewer dev spans than this (or fewer than MIN_CALIBRATION_OUTCOME of either outcome) and a fitted curve is noise
# (6 dev documents once gave wrong spans a calibrated 0.994): the calibrator stays the prior, the identity.
MIN_CALIBRATION_SPANS = 50
MIN_CALIBRATION_OUTCOME = 5


def _logit(score: float) -> float:
    p = min(max(score, _EPS), 1.0 - _EPS)
    return math.log(p / (1.0 - p))


@dataclass(frozen=True)
class PlattCalibrator:
    """``calibrated = sigmoid(slope * logit(raw) + intercept)``.

    ``fitted_on`` dev spans (0: the prior, the identity: the raw scores as they are).
    """

    slope: float = 1.0
    intercept: float = 0.0
    fitted_on: int = 0

    def __call__(self, score: float) -> float:
        """The calibrated probability of a raw score."""
        z = self.slope * _logit(score) + self.intercept
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))

    def to_dict(self) -> dict[str, float | str | int]:
        """JSON-ready form for a model's meta."""
        method = "platt" if self.fitted_on else "prior (identity: too few dev spans to fit)"
        return {"method": method, "slope": self.slope, "intercept": self.intercept, "fitted_on": self.fitted_on}


def fit_platt(
    scores: Sequence[float], correct: Sequence[bool], *, min_spans: int = MIN_CALIBRATION_SPANS
) -> PlattCalibrator:
    """Fit Platt scaling (Platt 1999; scikit-learn's logistic regression) on (raw score, was the span right) pairs.

    A span is right when it matches a gold span exactly.

    Args:
        scores: Raw confidences of predicted spans.
        correct: Whether each span matched a gold span exactly.
        min_spans: The fewest spans a fit is made from.

    Returns:
        The fitted calibrator; the prior (identity, ``fitted_on`` 0) below ``min_spans`` spans or
        ``MIN_CALIBRATION_OUTCOME`` of either outcome.
    """
    right = sum(bool(c) for c in correct)
    if len(scores) < min_spans or min(right, len(correct) - right) < MIN_CALIBRATION_OUTCOME:
        return PlattCalibrator()
    features = np.array([[_logit(s)] for s in scores])
    fit = LogisticRegression(C=1e4).fit(features, np.asarray(correct, dtype=int))
    return PlattCalibrator(float(fit.coef_[0][0]), float(fit.intercept_[0]), len(scores))


def fit_on_gold(model: NERModel, gold_docs: Sequence[Doc]) -> PlattCalibrator:
    """Fit a calibrator from a model's raw predictions on gold docs."""
    scores: list[float] = []
    correct: list[bool] = []
    for doc, spans in zip(gold_docs, model.predict(gold_docs), strict=True):
        gold = {(e.start_char, e.end_char, e.label_) for e in doc.ents}
        for span in spans:
            scores.append(span.score)
            correct.append((span.start, span.end, span.label) in gold)
    return fit_platt(scores, correct)


class CalibratedModel(WrappedModel):
    """A model whose entity scores pass through a calibrator."""

    def __init__(self, inner: NERModel, calibrator: PlattCalibrator) -> None:
        super().__init__(inner)
        self.calibrator = calibrator

    def predict(self, docs: Sequence[Doc], *, batch_size: int = 256) -> list[list[ScoredSpan]]:
        """The inner model's predictions with calibrated scores."""
        return [
            [replace(s, score=self.calibrator(s.score)) for s in spans]
            for spans in self.inner.predict(docs, batch_size=batch_size)
        ]
