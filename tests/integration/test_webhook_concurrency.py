"""A burst of webhooks waits its turn (issue #10, part 6).

At most ``NER_WEBHOOK_CONCURRENCY`` are applied at once, the others wait on the event loop without a thread, so the
platform API answers during the burst and every event is stored once. A real uvicorn server, on both databases; the
ingestion is the real one, wrapped to count how many run at once and to take 0.1 s longer (so the burst lasts long
enough to be observed).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from annotation_guide import Guide
from backend.api.app import create_app
from backend.db.models import AnnotationEvent
from backend.services import annotations
from backend.services.projects import register_project
from tests.conftest import open_db, serve_in_thread
from tests.integration.conftest import LS_PROJECT, backend_settings, conll_events

pytestmark = pytest.mark.integration
BURST = 40
CONCURRENCY = 2


def test_a_burst_is_applied_a_few_at_a_time_and_the_api_answers_meanwhile(
    database_url: str, redis_url: str, conll_guide: Guide, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = backend_settings(database_url, redis_url, "http://127.0.0.1:1/v1", webhook_concurrency=CONCURRENCY)
    with open_db(database_url) as db:
        register_project(db, ls_project_id=LS_PROJECT, guide=conll_guide, retrain_threshold=10_000)
    lock = threading.Lock()
    running, peak, done = 0, 0, 0
    ingest = annotations.ingest

    def counted(*args: Any, **kwargs: Any) -> annotations.Ingested:
        nonlocal running, peak, done
        with lock:
            running += 1
            peak = max(peak, running)
        try:
            time.sleep(0.1)
            return ingest(*args, **kwargs)
        finally:
            with lock:
                running -= 1
                done += 1

    monkeypatch.setattr(annotations, "ingest", counted)
    events = conll_events(shared_data, conll_guide, BURST)
    with serve_in_thread(create_app(settings)) as port, ThreadPoolExecutor(BURST) as pool:
        base = f"http://127.0.0.1:{port}"
        replies = [pool.submit(httpx.post, f"{base}/webhook", json=e, timeout=300) for e in events]
        while done == 0:  # the burst is under way
            time.sleep(0.01)
        listed = httpx.get(f"{base}/api/projects", timeout=300)
        done_when_listed = done
        statuses = [r.result().status_code for r in replies]
    assert listed.status_code == 200
    assert [p["ls_project_id"] for p in listed.json()] == [LS_PROJECT]
    assert done_when_listed < BURST, "the API waited for the whole burst"
    assert statuses == [200] * BURST
    assert peak == CONCURRENCY, f"{peak} webhooks were applied at once"
    with open_db(database_url) as db:
        assert db.scalar(select(func.count()).select_from(AnnotationEvent)) == BURST
