"""``nerloop project compare`` prints a finished comparison's rows.

A figure stored as null (PostgreSQL's JSON has no NaN: an F1 or interval with nothing to score, a cost of a row that
served nothing) prints as n/a.
"""

from __future__ import annotations

import pytest

from workers.cli_compare import _print


def test_null_figures_print_as_na(capsys: pytest.CaptureFixture[str]) -> None:
    result = {
        "rows": [
            {"name": "LLM zero-shot", "micro_f1": None, "micro_f1_interval": [None, 0.5], "cost_per_1k_docs": None},
            {"name": "cnn 10 docs", "micro_f1": 0.75, "micro_f1_interval": None, "cost_per_1k_docs": 0.0123},
        ],
        "break_even": [{"row": "cnn 10 docs", "llm_row": "LLM zero-shot", "volume": None}],
        "costs": {"seconds_per_label": None},
        "seconds_per_label_source": "default",
        "report_dir": "/tmp/r",
    }
    _print(result)
    out = capsys.readouterr().out.splitlines()
    assert "exact micro F1 n/a [n/a, 0.500]  $n/a/1k docs" in out[0]
    assert "exact micro F1 0.750  $0.0123/1k docs" in out[1]
    assert out[2] == "break-even cnn 10 docs vs LLM zero-shot: none"
    assert out[3] == "seconds per label: n/a (default)"
