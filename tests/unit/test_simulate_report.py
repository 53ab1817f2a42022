"""``bench/simulate.py --report``: the figures that decide issue #14's active-learning target.

Curves are written by hand (labels and F1 per round), so every expected value below is computed here, not read
back from the code: means over seeds, labels to random's final F1, and when a corpus counts as unfinished.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def simulate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_simulate", ROOT / "bench" / "simulate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def curve(corpus: str, strategy: str, seed: int, f1: list[float], start: int = 100, batch: int = 100) -> Any:
    points = [{"round": i, "labels": start + i * batch, "f1": value} for i, value in enumerate(f1)]
    return (corpus, strategy, seed), points


def test_labels_to_random_final_f1_use_the_mean_over_seeds(simulate: ModuleType) -> None:
    curves = dict(
        [
            curve("conll2003", "random", 0, [0.30, 0.40, 0.50, 0.60]),
            curve("conll2003", "random", 1, [0.30, 0.42, 0.52, 0.62]),  # random's final mean: 0.61 at 400 labels
            curve("conll2003", "least_confidence", 0, [0.30, 0.58, 0.65, 0.70]),
            curve("conll2003", "least_confidence", 1, [0.30, 0.66, 0.69, 0.72]),  # mean 0.62 at 200 labels
        ]
    )
    rows = {r["strategy"]: r for r in simulate.summarise(curves, "conll2003", 4)}
    lc, rnd = rows["least_confidence"], rows["random"]
    assert lc["seeds"] == rnd["seeds"] == 2
    assert lc["f1"] == pytest.approx([0.30, 0.62, 0.67, 0.71])
    assert lc["sd"][1] == pytest.approx(0.04)
    assert (lc["min"][1], lc["max"][1]) == (0.58, 0.66)
    assert lc["labels_to_random_final"] == 200
    assert lc["ratio_to_random_final"] == pytest.approx(0.5)
    assert rnd["labels_to_random_final"] == 400
    assert rnd["ratio_to_random_final"] == pytest.approx(1.0)
    # trapezoid over labels 100..400, divided by 300: seed 0 (0.44+0.615+0.675)/3 and seed 1 (0.48+0.675+0.705)/3
    assert lc["aulc"] == pytest.approx(((0.44 + 0.615 + 0.675) + (0.48 + 0.675 + 0.705)) / 6)


def test_an_unfinished_random_curve_is_not_random_s_final_f1(simulate: ModuleType) -> None:
    curves = dict(
        [
            curve("ai", "random", 0, [0.10, 0.20]),  # 2 of 4 rounds: its 0.20 is not random's final F1
            curve("ai", "least_confidence", 0, [0.10, 0.30, 0.35, 0.40]),
        ]
    )
    rows = {r["strategy"]: r for r in simulate.summarise(curves, "ai", 4)}
    assert rows["random"]["finished"] is False
    assert rows["least_confidence"]["finished"] is True
    assert rows["least_confidence"]["labels_to_random_final"] is None
    line = simulate.target_line({"ai": list(rows.values())}, "least_confidence")
    assert "ai: unfinished" in line
    assert "NOT MET (0 met)" in line


def test_unfinished_seeds_wait_and_finished_ones_count(simulate: ModuleType) -> None:
    curves = dict(
        [
            curve("ai", "random", 0, [0.10, 0.20, 0.30]),
            curve("ai", "random", 1, [0.12, 0.90]),  # unfinished: left out of the means until it ends
        ]
    )
    (row,) = simulate.summarise(curves, "ai", 3)
    assert row["seeds"] == 1
    assert row["f1"] == pytest.approx([0.10, 0.20, 0.30])
    assert row["finished"]


def test_the_target_needs_three_of_four_corpora(simulate: ModuleType) -> None:
    def rows(lc_f1: list[float], random_f1: list[float]) -> list[dict[str, Any]]:
        curves = dict([curve("c", "random", 0, random_f1), curve("c", "least_confidence", 0, lc_f1)])
        summary: list[dict[str, Any]] = simulate.summarise(curves, "c", len(random_f1))
        return summary

    met = rows([0.3, 0.55, 0.6, 0.6, 0.6], [0.3, 0.4, 0.45, 0.5, 0.55])  # 0.55 reached at 200 of 500 labels: 40%
    missed = rows([0.3, 0.4, 0.5, 0.56, 0.6], [0.3, 0.4, 0.45, 0.5, 0.55])  # at 400 of 500: 80%
    flat = rows([0.3, 0.3, 0.3, 0.3, 0.3], [0.3, 0.3, 0.2, 0.3, 0.3])  # random did not rise: not counted
    line = simulate.target_line({"conll2003": met, "ai": met, "politics": missed, "science": flat}, "least_confidence")
    assert "NOT MET (2 met)" in line
    assert "conll2003: 40% (met)" in line
    assert "politics: 80% (missed)" in line
    assert "science: not meaningful" in line
    line = simulate.target_line({"conll2003": met, "ai": met, "politics": met, "science": missed}, "least_confidence")
    assert "MET (3 met)" in line
    assert "NOT MET" not in line
