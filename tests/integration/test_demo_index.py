"""The demonstration index is built once per label watermark, in the background.

A request of a big project never waits for a rebuild once one index exists, a small project's next prompt shows its new
labels, and a huge labelled text never becomes a demonstration.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from annotation_guide import Guide
from backend.db.models import Project
from backend.services.annotations import ingest
from backend.services.llm_annotation import DemoIndex
from backend.services.projects import register_project
from backend.services.watermark import labels_count
from backend.settings import LLMSettings
from tests.conftest import open_db, sessions_for
from tests.integration.conftest import LS_PROJECT, annotation_event

pytestmark = pytest.mark.integration


def _label(database_url: str, task_id: int, text: str, spans: list[tuple[int, int, str]]) -> int:
    with open_db(database_url) as db:
        ingest(db, annotation_event(task_id=task_id, annotation_id=task_id, text=text, spans=spans))
        db.flush()
        return labels_count(db, db.scalars(select(Project)).one())


def test_the_index_is_rebuilt_in_the_background_per_watermark(database_url: str, conll_guide: Guide) -> None:
    with open_db(database_url) as db:
        project_id = register_project(db, ls_project_id=LS_PROJECT, guide=conll_guide).id
    first = _label(database_url, 1, "Anna Smith lives in Paris .", [(0, 10, "person"), (20, 25, "location")])
    huge = "Bob Jones " + "went on and on " * 200 + "."
    _label(database_url, 2, huge, [(0, 9, "person")])
    with sessions_for(database_url) as sessions:
        index = DemoIndex(sessions, LLMSettings(demonstrations=5, demo_max_chars=500))
        selector = index.get(project_id, first).result(timeout=60)  # the first build is waited for
        assert [d.text for d in selector.select("Carl lives in Rome .")] == ["Anna Smith lives in Paris ."]
        newer = _label(database_url, 3, "Dora Klein works in Berlin .", [(0, 10, "person")])
        index.QUICK_BUILD_S = 0.0  # as for a big project: a rebuild is never waited for
        stale = index.get(project_id, newer)
        # answered at once with what exists
        assert stale.done()
        assert stale.result() is selector
        deadline = time.monotonic() + 60
        while (fresh := index.get(project_id, newer).result()) is selector:
            assert time.monotonic() < deadline, "the newer index was never built"
            time.sleep(0.05)
        texts = {d.text for d in fresh.select("Carl works in Rome .")}
        assert texts == {"Anna Smith lives in Paris .", "Dora Klein works in Berlin ."}  # never the huge one
        assert index.get(project_id, newer).result() is fresh  # built once per watermark
        index.QUICK_BUILD_S = 60.0  # a small project: the next prompt shows a new label
        newest = _label(database_url, 4, "Emil Lang works in Vienna .", [(0, 9, "person")])
        texts = {d.text for d in index.get(project_id, newest).result(timeout=60).select("Carl works in Rome .")}
        assert "Emil Lang works in Vienna ." in texts
    with sessions_for(database_url) as sessions:  # only the newest labelled tasks make the pool
        index = DemoIndex(sessions, LLMSettings(demonstrations=5, demo_pool_max=2))
        pool = {d.text for d in index.get(project_id, newest).result(timeout=60).select("Carl works in Rome .")}
        assert pool == {"Dora Klein works in Berlin .", "Emil Lang works in Vienna ."}
