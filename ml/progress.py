"""Per-type progress towards the target: label marks and a learning-curve forecast of the labels still needed."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Beyond this many labels a forecast is not a plan but an extrapolation: it is reported as out of reach.
MAX_FORECAST_LABELS = 100_000


@dataclass(frozen=True)
class CurvePoint:
    """One model version on a type's learning curve.

    The type's labels it was trained on, its test F1, the F1's 95% interval (None: not measured) and whether the test
    set held enough gold spans to measure it.
    """

    labels: int
    f1: float
    interval: tuple[float, float] | None = None
    measurable: bool = True


@dataclass(frozen=True)
class Forecast:
    """How far one entity type is from the F1 target, and how many more labels the learning curve says it needs.

    ``more_labels`` is 0 when the target is met, None when no forecast can be made (``reason`` says why). The curve
    is ``f1 = intercept + slope * ln(labels)``, a least-squares line (``numpy.polyfit``) through the versions.
    ``band`` is the 10th-90th percentile of the labels needed over refits of the curve with each version's F1 drawn
    from its interval (None at the high end: beyond ``MAX_FORECAST_LABELS``). ``hours`` (and ``hours_band``) are
    annotator hours at the project's seconds per label of this type.
    """

    labels: int
    f1: float | None
    target: float
    more_labels: int | None
    reason: str
    intercept: float | None = None
    slope: float | None = None
    band: tuple[int, int | None] | None = None
    hours: float | None = None
    hours_band: tuple[float, float | None] | None = None


def label_mark(count: int, *, usable: int, good: int) -> str:
    """``good``, ``usable`` or ``collecting``: where a type's label count stands against the guide's marks."""
    if count >= good:
        return "good"
    return "usable" if count >= usable else "collecting"


def _fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    slope, intercept = np.polyfit(xs, ys, 1)
    return float(intercept), float(slope)


def _needed(intercept: float, slope: float, target: float) -> float:
    """Labels at which the line reaches the target (inf when it never does within MAX_FORECAST_LABELS)."""
    if slope <= 0:
        return math.inf
    exponent = (target - intercept) / slope
    return math.inf if exponent > math.log(MAX_FORECAST_LABELS) else float(math.ceil(math.exp(exponent)))


def forecast(
    points: Sequence[CurvePoint | tuple[int, float]],
    *,
    labels: int,
    target: float,
    seconds_per_label: float | None = None,
    samples: int = 500,
    seed: int = 0,
) -> Forecast:
    """Forecast the labels (and annotator hours) a type needs to reach ``target`` F1.

    Args:
        points: One per model version, oldest first: :class:`CurvePoint` (or ``(labels, f1)``).
        labels: The type's labels now.
        target: The F1 target.
        seconds_per_label: Annotator seconds per label of this type (None: no hours).
        samples: Refits for the band.
        seed: Their seed.

    Returns:
        The forecast; no number when the latest version is not measurable, when fewer than two label counts were
        trained on, or when F1 does not rise with labels.
    """
    curve = [p if isinstance(p, CurvePoint) else CurvePoint(int(p[0]), float(p[1])) for p in points]
    latest = curve[-1] if curve else None
    f1 = latest.f1 if latest else None
    hours = (lambda n: n * seconds_per_label / 3600) if seconds_per_label else None
    if latest is not None and not latest.measurable:
        return Forecast(labels, f1, target, None, "not yet measurable: too few gold spans on the test documents")
    if latest is not None and latest.f1 >= target:
        return Forecast(labels, f1, target, 0, "target met by the latest version", hours=0.0 if hours else None)
    usable = [p for p in curve if p.labels > 0 and p.measurable]
    if len({p.labels for p in usable}) < 2:
        return Forecast(labels, f1, target, None, "not enough data: needs versions trained on two label counts")
    xs = [math.log(p.labels) for p in usable]
    intercept, slope = _fit(xs, [p.f1 for p in usable])
    if slope <= 0:
        return Forecast(labels, f1, target, None, "F1 is not rising with more labels", intercept, slope)
    needed = _needed(intercept, slope, target)
    band = _band(usable, xs, target, labels, samples=samples, seed=seed)
    hours_band = None
    if hours is not None and band is not None:
        hours_band = (hours(band[0]), None if band[1] is None else hours(band[1]))
    if math.isinf(needed):
        return Forecast(
            labels, f1, target, None, f"more than {MAX_FORECAST_LABELS:,} labels at this rate", intercept, slope, band
        )
    more = max(0, int(needed) - labels)
    return Forecast(
        labels,
        f1,
        target,
        more,
        "learning-curve fit",
        intercept,
        slope,
        band,
        hours(more) if hours else None,
        hours_band,
    )


def _band(
    points: list[CurvePoint], xs: list[float], target: float, labels: int, *, samples: int, seed: int
) -> tuple[int, int | None] | None:
    """10th-90th percentile of the labels still needed over refits with each F1 drawn from its interval.

    Each F1 is drawn from a normal with sd = interval width / 3.92, each version independently, though nested test sets
    make their errors correlated: the band is on the wide side. None when no version has an interval or when 90% of the
    refits never reach the target within ``MAX_FORECAST_LABELS``.
    """
    if not samples or all(p.interval is None for p in points):
        return None
    rng = np.random.default_rng(seed)
    sds = np.array([0.0 if p.interval is None else (p.interval[1] - p.interval[0]) / 3.92 for p in points])
    means = np.array([p.f1 for p in points])
    draws = np.clip(rng.normal(means, sds, size=(samples, len(points))), 0.0, 1.0)
    beyond = 2.0 * MAX_FORECAST_LABELS  # "never" as a number, so that percentiles interpolate
    needed = np.array([min(_needed(*_fit(xs, list(row)), target), beyond) for row in draws])
    low, high = (float(x) for x in np.percentile(needed, [10, 90]))
    if low > MAX_FORECAST_LABELS:
        return None
    return max(0, int(low) - labels), None if high > MAX_FORECAST_LABELS else max(0, int(high) - labels)
