"""Promotion and rollback reach the serving backend without failing requests in flight."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from annotation_guide import Guide
from backend.adapters.models import ModelRegistry
from backend.api.app import create_app
from backend.services.projects import record_model_version, register_project
from backend.settings import LLMSettings, Settings
from ml.model_store import load_model
from ml.training import TrainedModel
from tests.conftest import open_db

pytestmark = pytest.mark.integration


def _copy_as(model: TrainedModel, tmp_path: Path, version: str) -> Path:
    target = tmp_path / version
    shutil.copytree(model.path, target)
    meta = json.loads((target / "meta.json").read_text())
    meta["version"] = version
    (target / "meta.json").write_text(json.dumps(meta))
    return target


def test_registry_swaps_in_the_background(small_model: TrainedModel, tmp_path: Path) -> None:
    old, new = _copy_as(small_model, tmp_path, "v-old"), _copy_as(small_model, tmp_path, "v-new")
    gate = threading.Event()

    def slow_loader(path: Path):  # type: ignore[no-untyped-def]
        if path.name == "v-new":
            gate.wait(30)
        return load_model(path)

    registry = ModelRegistry(loader=slow_loader)
    in_flight = registry.get(1, version="v-old", path=str(old))
    assert in_flight is not None
    assert in_flight.version == "v-old"
    during = registry.get(1, version="v-new", path=str(new))  # the new one loads aside: the old one serves
    text = "Peter Blackburn went to Paris on Monday ."
    expected = load_model(old).predict([load_model(old).make_doc(text)])
    assert expected[0], "the small model finds no entity here: the checks below would compare nothing"
    assert during is in_flight
    assert during.predict([during.make_doc(text)]) == expected
    gate.set()
    registry.wait()
    swapped = registry.get(1, version="v-new", path=str(new))
    assert swapped is not None
    assert swapped.version == "v-new"
    assert in_flight.predict([in_flight.make_doc(text)]) == expected  # a held reference keeps working


def test_rollback_through_the_api(
    database_url: str, redis_url: str, conll_guide: Guide, small_model: TrainedModel, tmp_path: Path
) -> None:
    first, second = _copy_as(small_model, tmp_path, "v1"), _copy_as(small_model, tmp_path, "v2")
    with open_db(database_url) as db:
        project = register_project(db, ls_project_id=5, guide=conll_guide)
        for version, path in (("v1", first), ("v2", second)):
            record_model_version(
                db,
                project,
                version=version,
                path=str(path),
                architecture="cnn",
                metrics=small_model.meta.metrics,
                promote=True,
            )
        project_id = project.id
    settings = Settings(
        database_url=database_url, redis_url=redis_url, llm=LLMSettings(base_url="http://127.0.0.1:1/v1")
    )
    with TestClient(create_app(settings)) as client:
        for label in conll_guide.labels:
            client.put(f"/api/projects/{project_id}/routing/{label}", json={"route": "model"})
        body = {"project": "5.1", "tasks": [{"id": 1, "data": {"text": "Peter went to Paris ."}}]}
        assert client.post("/predict", json=body).json()["results"][0]["model_version"].startswith("v2")
        rolled = client.post(f"/api/projects/{project_id}/rollback", json={"version": "v1"})
        assert rolled.status_code == 200
        assert rolled.json()["current_version"] == "v1"
        client.app.state.predictor.registry.get(project_id, version="v1", path=str(first))  # type: ignore[attr-defined]
        client.app.state.predictor.registry.wait()  # type: ignore[attr-defined]
        assert client.post("/predict", json=body).json()["results"][0]["model_version"].startswith("v1")
        missing = client.post(f"/api/projects/{project_id}/rollback", json={"version": "v9"})
        assert missing.status_code == 404
        assert "has no model version 'v9'" in missing.json()["error"]
