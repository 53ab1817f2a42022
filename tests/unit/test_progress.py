"""Per-type progress: label marks and the learning-curve forecast."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ml.progress import MAX_FORECAST_LABELS, CurvePoint, forecast, label_mark


def test_label_marks_follow_the_guide() -> None:
    assert [label_mark(n, usable=200, good=500) for n in (0, 199, 200, 499, 500, 9000)] == [
        "collecting",
        "collecting",
        "usable",
        "usable",
        "good",
        "good",
    ]


def test_forecast_recovers_an_exact_log_curve() -> None:
    points = [(n, 0.2 + 0.1 * math.log(n)) for n in (50, 100, 200)]
    result = forecast(points, labels=300, target=0.85)
    assert result.slope == pytest.approx(0.1)
    assert result.intercept == pytest.approx(0.2)
    assert result.more_labels == math.ceil(math.exp(6.5)) - 300  # 0.2 + 0.1 ln(n) = 0.85 at n = e^6.5


@given(
    intercept=st.floats(-1.0, 0.5),
    slope=st.floats(0.01, 0.3),
    counts=st.lists(st.integers(5, 5000), min_size=2, max_size=6, unique=True),
)
def test_forecast_reaches_the_target_on_the_fitted_curve(intercept: float, slope: float, counts: list[int]) -> None:
    points = [(n, intercept + slope * math.log(n)) for n in sorted(counts)]
    target = 0.85
    result = forecast(points, labels=max(counts), target=target)
    if points[-1][1] >= target:
        assert result.more_labels == 0
    elif result.more_labels is None:
        assert math.exp((target - intercept) / slope) > MAX_FORECAST_LABELS * 0.99
    else:
        needed = max(counts) + result.more_labels
        assert intercept + slope * math.log(needed) >= target - 1e-6
        assert needed <= 1 or intercept + slope * math.log(needed - 1) < target + 1e-6


def test_no_forecast_without_a_rising_curve_of_two_points() -> None:
    assert forecast([], labels=0, target=0.85).more_labels is None
    assert forecast([(100, 0.5)], labels=100, target=0.85).reason.startswith("not enough data")
    falling = forecast([(100, 0.6), (200, 0.5)], labels=200, target=0.85)
    assert falling.more_labels is None
    assert falling.reason == "F1 is not rising with more labels"
    assert forecast([(100, 0.6), (200, 0.9)], labels=200, target=0.85).more_labels == 0


def test_a_version_too_small_to_measure_gives_no_forecast_and_no_target_met() -> None:
    """The issue's demo: F1 1.000 on three test entities is not "target met, 0 more labels"."""
    tiny = forecast([CurvePoint(20, 0.5), CurvePoint(30, 1.0, (0.0, 1.0), measurable=False)], labels=30, target=0.85)
    assert tiny.more_labels is None
    assert tiny.reason.startswith("not yet measurable")


def test_the_forecast_band_and_hours() -> None:
    points = [
        CurvePoint(n, 0.2 + 0.1 * math.log(n), (0.15 + 0.1 * math.log(n), 0.25 + 0.1 * math.log(n)))
        for n in (50, 100, 200)
    ]
    result = forecast(points, labels=300, target=0.85, seconds_per_label=36)
    assert result.more_labels == math.ceil(math.exp(6.5)) - 300
    assert result.band is not None
    low, high = result.band
    assert high is not None
    assert low < result.more_labels < high
    assert result.hours == pytest.approx(result.more_labels * 36 / 3600)
    assert result.hours_band == (pytest.approx(low / 100), pytest.approx(high / 100))
    assert forecast([*points[:2], CurvePoint(200, 0.9)], labels=200, target=0.85, seconds_per_label=36).hours == 0.0


def test_the_band_covers_the_true_need_about_80_percent_of_the_time() -> None:
    """Coverage by simulation.

    A true curve 0.1 + 0.11 ln(n), three versions whose F1 is measured with noise of a known sd and reported with its
    95% interval; the 10th-90th percentile band holds the true need in about 80% of 200 repetitions.
    """
    rng = np.random.default_rng(3)
    intercept, slope, sd, target = 0.1, 0.11, 0.02, 0.85
    truth = math.ceil(math.exp((target - intercept) / slope))
    covered = 0
    for trial in range(200):
        points = []
        for n in (100, 200, 400):
            f1 = intercept + slope * math.log(n) + rng.normal(0, sd)
            points.append(CurvePoint(n, f1, (f1 - 1.96 * sd, f1 + 1.96 * sd)))
        band = forecast(points, labels=400, target=target, samples=300, seed=trial).band
        assert band is not None
        covered += band[0] <= truth - 400 and (band[1] is None or truth - 400 <= band[1])
    assert 0.65 <= covered / 200 <= 0.95
