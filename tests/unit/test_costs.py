"""The cost and break-even arithmetic of ``nerloop compare`` against hand-computed cases."""

from __future__ import annotations

import pytest

from ml.costs import (
    CostSettings,
    break_even_volume,
    compute_cost,
    labelling_cost,
    llm_cost_per_1k_docs,
    llm_cost_per_request,
    overtake_labels,
    serving_cost_per_1k_docs,
)

ISSUE = CostSettings(llm_input_per_1k=0.003, llm_output_per_1k=0.006)


def test_the_issues_api_bill_is_36_dollars_a_day() -> None:
    # 700 * 0.003 / 1000 + 150 * 0.006 / 1000 = 0.0021 + 0.0009 = 0.003 per request; 12,000 requests: $36
    per_request = llm_cost_per_request(700, 150, ISSUE)
    assert per_request == pytest.approx(0.003)
    assert 12_000 * per_request == pytest.approx(36.0)
    assert llm_cost_per_1k_docs(700, 150, docs_per_second=None, costs=ISSUE) == pytest.approx(3.0)


def test_a_self_hosted_llm_adds_its_machine_time() -> None:
    costs = CostSettings(llm_input_per_1k=0, llm_output_per_1k=0, llm_compute_per_hour=3.6)
    # 1,000 docs at 0.5 doc/s: 2,000 s = 5/9 h at $3.6/h = $2
    assert llm_cost_per_1k_docs(700, 150, docs_per_second=0.5, costs=costs) == pytest.approx(2.0)
    assert llm_cost_per_1k_docs(700, 150, docs_per_second=None, costs=costs) == 0.0


def test_serving_training_and_labelling() -> None:
    # 1,000 docs at 100 docs/s: 10 s of a $1.80/h machine = $0.005
    assert serving_cost_per_1k_docs(100, 1.8) == pytest.approx(0.005)
    assert compute_cost(1800, 0.2) == pytest.approx(0.1)
    # 600 labels * 6 s = 1 h at $30
    assert labelling_cost(600, CostSettings()) == pytest.approx(30.0)
    with pytest.raises(ValueError, match="throughput"):
        serving_cost_per_1k_docs(0, 1.0)
    with pytest.raises(ValueError, match="negative"):
        CostSettings(annotator_per_hour=-1)


def test_break_even() -> None:
    # LLM $0.003 a doc, fine-tuned $0.0001 a doc after $29 once: 29 / 0.0029 = 10,000 docs
    volume = break_even_volume(
        llm_per_doc=0.003, fine_tuned_fixed=29.0, fine_tuned_per_doc=0.0001, llm_f1=0.6, fine_tuned_f1=0.7
    )
    assert volume == pytest.approx(10_000)
    # equal F1 still trades
    assert break_even_volume(
        llm_per_doc=0.003, fine_tuned_fixed=29.0, fine_tuned_per_doc=0.0001, llm_f1=0.7, fine_tuned_f1=0.7
    ) == pytest.approx(10_000)
    # worse F1: no answer; serving as dear as the LLM: never
    assert (
        break_even_volume(llm_per_doc=0.003, fine_tuned_fixed=1, fine_tuned_per_doc=0, llm_f1=0.8, fine_tuned_f1=0.7)
        is None
    )
    assert (
        break_even_volume(llm_per_doc=0.001, fine_tuned_fixed=1, fine_tuned_per_doc=0.001, llm_f1=0, fine_tuned_f1=1)
        is None
    )
    assert (
        break_even_volume(llm_per_doc=0.001, fine_tuned_fixed=0, fine_tuned_per_doc=0.001, llm_f1=0, fine_tuned_f1=1)
        == 0.0
    )


def test_overtake_is_interpolated_on_the_learning_curve() -> None:
    curve = [(200, 0.5), (100, 0.3), (400, 0.8)]
    # between (200, 0.5) and (400, 0.8): 200 + (0.6 - 0.5) / 0.3 * 200 = 266.67
    assert overtake_labels(curve, 0.6) == pytest.approx(200 + 200 / 3)
    assert overtake_labels(curve, 0.2) == 100.0  # passed at or before the smallest size
    assert overtake_labels(curve, 0.9) is None
    assert overtake_labels([], 0.1) is None
    assert overtake_labels([(100, 0.0), (200, 0.0)], 0.0) is None  # nothing found by either
