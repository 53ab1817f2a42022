"""A project comparison is bounded (issue #13 review).

The worker's time limits come from NER_COMPARE_TIME_LIMIT_S, so a hung LLM cannot hold the train queue (and every
retrain) for ever.
"""

from __future__ import annotations

import pytest

from backend.settings import Settings
from workers.celery_app import make_celery


def test_the_comparison_task_has_a_soft_and_a_hard_time_limit_from_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NER_COMPARE_TIME_LIMIT_S", "900")
    app = make_celery(Settings())
    limits = app.conf.task_annotations["workers.compare_project"]
    assert limits == {"time_limit": 900, "soft_time_limit": 840}


def test_a_limit_too_short_to_run_anything_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NER_COMPARE_TIME_LIMIT_S", "30")
    with pytest.raises(ValueError, match="compare_time_limit_s"):
        Settings()
