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

from ml.prediction import NERModel, ScoredSpan

_EPS = 1e-6


def _logit(score: float) -> float:
    p = min(max(score, _EPS), 1.0 - _EPS)
    return math.log(p / (1.0 - p))


@dataclass(frozen=True)
class PlattCalibrator:
    """``calibrated = sigmoid(slope * logit(raw) + intercept)``."""

    slope: float = 1.0
    intercept: float = 0.0

    def __call__(self, score: float) -> float:
        """The calibrated probability of a raw score."""
        z = self.slope * _logit(score) + self.intercept
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))

    def to_dict(self) -> dict[str, float | str]:
        """JSON-ready form for a model's meta."""
        return {"method": "platt", "slope": self.slope, "intercept": self.intercept}


def fit_platt(scores: Sequence[float], correct: Sequence[bool]) -> PlattCalibrator:
    """Fit Platt scaling on (raw score, was the span exactly right) pairs.

    Args:
        scores: Raw confidences of predicted spans.
        correct: Whether each span matched a gold span exactly.

    Returns:
        The fitted calibrator; the identity when both outcomes are not present.
    """
    if len(set(correct)) < 2:
        return PlattCalibrator()
    features = np.array([[_logit(s)] for s in scores])
    fit = LogisticRegression(C=1e4).fit(features, np.asarray(correct, dtype=int))
    return PlattCalibrator(slope=float(fit.coef_[0][0]), intercept=float(fit.intercept_[0]))


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


class CalibratedModel:
    """A model whose entity scores pass through a calibrator."""

    def __init__(self, inner: NERModel, calibrator: PlattCalibrator) -> None:
        self.inner = inner
        self.calibrator = calibrator

    @property
    def version(self) -> str:
        """The inner model's version."""
        return self.inner.version

    @property
    def labels(self) -> list[str]:
        """The inner model's labels."""
        return self.inner.labels

    def make_doc(self, text: str) -> Doc:
        """Tokenise like the inner model."""
        return self.inner.make_doc(text)

    def predict(self, docs: Sequence[Doc], *, batch_size: int = 256) -> list[list[ScoredSpan]]:
        """The inner model's predictions with calibrated scores."""
        return [
            [replace(s, score=self.calibrator(s.score)) for s in spans]
            for spans in self.inner.predict(docs, batch_size=batch_size)
        ]
