"""`nerloop retrain` with the broker away: the run is stored, the command says so in one line (no traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from annotation_guide import Guide
from backend.db.models import TrainingRun
from backend.db.session import upgrade
from backend.services.annotations import ingest
from backend.settings import get_settings
from tests.conftest import open_db
from tests.integration.conftest import conll_events, register_ls_project
from workers.cli import app

pytestmark = pytest.mark.integration
UNREACHABLE = "redis://127.0.0.1:1/0"


def test_retrain_with_the_broker_away_stores_the_run_and_says_so_in_one_line(
    tmp_path: Path, shared_data: Path, conll_guide: Guide, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'nerloop.db'}"
    upgrade(url)
    settings = get_settings().model_copy(update={"database_url": url})
    project_id = register_ls_project(settings, conll_guide)
    with open_db(url) as db:
        for event in conll_events(shared_data, conll_guide, 3):
            ingest(db, event)
    monkeypatch.setenv("NER_DATABASE_URL", url)
    monkeypatch.setenv("NER_REDIS_URL", UNREACHABLE)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["retrain", "--project", str(project_id), "--no-wait"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2, result.output
    assert "broker is unreachable" in result.output
    assert "Traceback" not in result.output
    with open_db(url) as db:
        runs = db.scalars(select(TrainingRun)).all()
    assert [(r.status, r.annotation_watermark) for r in runs] == [("queued", 3)]  # the sweep sends it later
