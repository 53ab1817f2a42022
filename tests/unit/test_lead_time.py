"""Seconds per label from Label Studio's ``lead_time`` (``backend.services.lead_time``).

The one formula the dashboard's forecast and a comparison's labelling cost share.
"""

from __future__ import annotations

import pytest

from backend.services.lead_time import seconds_per_label


def test_a_tasks_time_is_shared_by_its_labels() -> None:
    # 10 annotations took 600 s (60 s a task); 20 labelled tasks carry 80 labels: 60 * 20 / 80 = 15 s a label
    pace = {"seconds": 600.0, "tasks": 10.0, "labelled_tasks": 20.0}
    assert seconds_per_label(pace, 80) == pytest.approx(15.0)
    assert seconds_per_label(pace, 20) == pytest.approx(60.0)  # one type's labels: its share of the time


def test_no_recorded_time_or_no_label_gives_none() -> None:
    assert seconds_per_label({"seconds": 0.0, "tasks": 0.0, "labelled_tasks": 5.0}, 10) is None
    assert seconds_per_label({"seconds": 60.0, "tasks": 1.0, "labelled_tasks": 1.0}, 0) is None
