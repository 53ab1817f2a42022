from __future__ import annotations

from ml.prediction import ScoredSpan
from ml.routing import compute_routes, merge_routed

LABELS = ["person", "location", "misc"]


def _span(start: int, end: int, label: str, score: float) -> ScoredSpan:
    return ScoredSpan(start, end, label, "x" * (end - start), score)


def test_everything_goes_to_the_llm_before_any_model() -> None:
    table = compute_routes(LABELS, per_type_f1=None, target_f1=0.85)
    assert [(e.label, e.route, e.source, e.f1) for e in table.values()] == [
        ("person", "llm", "auto", None),
        ("location", "llm", "auto", None),
        ("misc", "llm", "auto", None),
    ]


def test_types_at_or_above_target_go_to_the_model_and_overrides_win() -> None:
    table = compute_routes(
        LABELS,
        per_type_f1={"person": 0.85, "location": 0.849},
        target_f1=0.85,
        overrides={"misc": "model", "person": "llm"},
    )
    assert table["person"].route == "llm"
    assert table["person"].source == "override"
    assert table["person"].f1 == 0.85
    assert table["location"].route == "llm"
    assert table["location"].source == "auto"
    assert table["misc"].route == "model"
    assert table["misc"].f1 is None
    assert compute_routes(["person"], per_type_f1={"person": 0.85}, target_f1=0.85)["person"].route == "model"


def test_merge_keeps_each_source_for_its_types_and_resolves_overlaps_by_score() -> None:
    table = compute_routes(LABELS, per_type_f1={"person": 0.9}, target_f1=0.85)  # person: model, others: llm
    model = [_span(0, 5, "person", 0.9), _span(10, 15, "location", 0.99)]  # location is not the model's
    llm = [_span(10, 15, "location", 0.5), _span(0, 5, "person", 0.5), _span(3, 8, "misc", 0.6)]
    merged = merge_routed(model, llm, table)
    assert merged == [_span(0, 5, "person", 0.9), _span(10, 15, "location", 0.5)]  # misc overlaps a better span
