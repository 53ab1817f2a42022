"""What the app prepares before it serves: each project's guide and tokenizer (issue #10, part 6).

The first webhooks after a start must not wait for spaCy's import and a guide's parse (seconds) past Label Studio's
1 s; the slow rest of the warm-up (label and demonstration indexes) runs in the background.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from annotation_guide import Guide
from backend.api.app import create_app
from backend.services import label_state, projects
from backend.services.predictions import Predictor
from tests.integration.conftest import backend_settings, register_ls_project

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # no SQL of its own beyond a project list
def test_each_projects_tokenizer_is_ready_before_the_app_serves(
    database_url: str, redis_url: str, conll_guide: Guide, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = backend_settings(database_url, redis_url, "http://127.0.0.1:9/v1")
    register_ls_project(settings, conll_guide)
    monkeypatch.setattr(Predictor, "warm_up", lambda *args, **kwargs: None)  # only what runs before serving
    monkeypatch.setattr(label_state, "_blanks", {})
    projects._parse_guide.cache_clear()
    with TestClient(create_app(settings)) as client:
        assert conll_guide.language in label_state._blanks
        assert projects._parse_guide.cache_info().currsize == 1
        assert client.get("/health").status_code == 200
