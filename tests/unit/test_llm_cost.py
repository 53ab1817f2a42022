"""The price of LLM calls."""

from __future__ import annotations

import pytest

from ml.llm import Prices, cost_usd


def test_cost_arithmetic() -> None:
    prices = Prices(input_per_million=0.15, output_per_million=0.60)
    assert cost_usd(2_000_000, 500_000, prices) == pytest.approx(0.30 + 0.30)
    assert cost_usd(1_200, 80, prices) == pytest.approx(1_200 * 0.15e-6 + 80 * 0.60e-6)
    assert cost_usd(10_000, 10_000, Prices()) == 0.0
    with pytest.raises(ValueError, match="negative"):
        cost_usd(-1, 0, prices)
    with pytest.raises(ValueError, match="negative"):
        Prices(input_per_million=-0.1)
