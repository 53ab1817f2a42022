"""Per-type progress: label marks and the learning-curve forecast."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ml.progress import MAX_FORECAST_LABELS, forecast, label_mark


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
    assert result.slope == pytest.approx(0.1) and result.intercept == pytest.approx(0.2)
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
    assert forecast([(100, 0.5)], labels=100, target=0.85).reason.startswith("needs versions")
    falling = forecast([(100, 0.6), (200, 0.5)], labels=200, target=0.85)
    assert falling.more_labels is None and falling.reason == "F1 is not rising with more labels"
    assert forecast([(100, 0.6), (200, 0.9)], labels=200, target=0.85).more_labels == 0
