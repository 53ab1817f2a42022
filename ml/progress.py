"""Per-type progress towards the target: label marks and a learning-curve forecast of the labels still needed."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# Beyond this many labels a forecast is not a plan but an extrapolation: it is reported as out of reach.
MAX_FORECAST_LABELS = 100_000


@dataclass(frozen=True)
class Forecast:
    """How far one entity type is from the F1 target, and how many more labels the learning curve says it needs.

    ``more_labels`` is 0 when the target is met, None when no forecast can be made (``reason`` says why).
    The curve is ``f1 = intercept + slope * ln(labels)``, fitted by least squares on the model versions.
    """

    labels: int
    f1: float | None
    target: float
    more_labels: int | None
    reason: str
    intercept: float | None = None
    slope: float | None = None


def label_mark(count: int, *, usable: int, good: int) -> str:
    """``good``, ``usable`` or ``collecting``: where a type's label count stands against the guide's marks."""
    if count >= good:
        return "good"
    return "usable" if count >= usable else "collecting"


def forecast(points: Sequence[tuple[int, float]], *, labels: int, target: float) -> Forecast:
    """Forecast the labels a type needs to reach ``target`` F1.

    Args:
        points: (labels the version was trained on, its dev F1 for the type), one per model version.
        labels: The type's labels now.
        target: The F1 target.

    Returns:
        The forecast.
    """
    latest = points[-1][1] if points else None
    if latest is not None and latest >= target:
        return Forecast(labels, latest, target, 0, "target met by the latest version")
    usable = [(n, f1) for n, f1 in points if n > 0]
    if len({n for n, _ in usable}) < 2:
        return Forecast(labels, latest, target, None, "needs versions trained on at least two label counts")
    xs = [math.log(n) for n, _ in usable]
    ys = [f1 for _, f1 in usable]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sum((x - mean_x) ** 2 for x in xs)
    intercept = mean_y - slope * mean_x
    if slope <= 0:
        return Forecast(labels, latest, target, None, "F1 is not rising with more labels", intercept, slope)
    exponent = (target - intercept) / slope
    if exponent > math.log(MAX_FORECAST_LABELS):
        return Forecast(
            labels, latest, target, None, f"more than {MAX_FORECAST_LABELS:,} labels at this rate", intercept, slope
        )
    needed = math.ceil(math.exp(exponent))
    return Forecast(labels, latest, target, max(0, needed - labels), "learning-curve fit", intercept, slope)
