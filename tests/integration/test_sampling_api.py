"""A project's sampling strategy through the API and the CLI on the real database (SQLite and PostgreSQL).

Partial changes, refusals that name the field, weights only for the guide's types, the rescorings read back, and the
answers described in OpenAPI. The rescoring itself (a real worker choosing a diverse batch) is
tests/integration/test_rescoring_strategy.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from backend.cli import app
from backend.services.projects import project_by_id
from backend.services.sampling import record_rescoring
from backend.settings import get_settings
from ml.sampling_strategy import SamplingStrategy
from tests.conftest import open_db
from tests.integration.conftest import Backend

pytestmark = pytest.mark.integration
NERLOOP = str(Path(sys.executable).parent / "nerloop")
DEFAULT = SamplingStrategy().model_dump()


def _put(backend: Backend, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    reply = backend.client.put(f"/api/projects/{backend.project_id}/sampling", json=body)
    return reply.status_code, reply.json()


def _strategy(backend: Backend) -> dict[str, Any]:
    reply = backend.client.get(f"/api/projects/{backend.project_id}/sampling")
    assert reply.status_code == 200, reply.text
    strategy: dict[str, Any] = reply.json()["strategy"]
    return strategy


def test_get_and_partial_put(backend: Backend) -> None:
    reply = backend.client.get(f"/api/projects/{backend.project_id}/sampling")
    assert reply.status_code == 200, reply.text
    assert reply.json() == {
        "project_id": backend.project_id,
        "strategy": DEFAULT,
        "described": "least_confidence + type weights",
        "measures": ["least_confidence", "margin", "entropy"],
        "last_rescoring": None,
    }
    status, body = _put(backend, {"measure": "margin"})
    assert status == 200, body
    assert body["strategy"] == DEFAULT | {"measure": "margin"}
    status, body = _put(backend, {"diversity": True, "diversity_weight": 0.3, "representation": "minilm"})
    assert status == 200, body
    changed = DEFAULT | {"measure": "margin", "diversity": True, "diversity_weight": 0.3, "representation": "minilm"}
    assert body["strategy"] == changed  # the measure set before is kept
    assert body["described"] == "margin + diversity (alpha 0.3, minilm vectors) + type weights"
    status, body = _put(backend, {"diversity_weight": None})  # null: modAL's trade-off
    assert status == 200
    assert body["strategy"] == changed | {"diversity_weight": None}
    assert _strategy(backend) == changed | {"diversity_weight": None}  # stored, not only answered
    missing = backend.client.get("/api/projects/999999/sampling")
    assert missing.status_code == 404, missing.text


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"measure": "bald"}, "measure"),
        ({"diversity_weight": 1.5}, "diversity_weight"),
        ({"diversty": True}, "diversty"),
        ({"representation": "bert"}, "representation"),
        ({"measure": None}, "measure"),
        ({"type_weights": None}, "type_weights"),
        ({"weights": {"planet": 2.0}}, "planet"),
        ({"weights": {"person": -1.0}}, "person"),
        ({"weights": {"person": "heavy"}}, "person"),
    ],
)
def test_a_bad_change_is_a_422_naming_the_field_and_changes_nothing(
    backend: Backend, body: dict[str, Any], named: str
) -> None:
    assert _put(backend, {"measure": "entropy"})[0] == 200
    status, answer = _put(backend, body)
    assert status == 422, answer
    assert named in answer["error"], answer
    assert _strategy(backend) == DEFAULT | {"measure": "entropy"}


def test_weights_only_for_the_guide_s_types_and_replaced_as_a_whole(backend: Backend) -> None:
    status, body = _put(backend, {"weights": {"person": 2.0, "misc": 1.5}})
    assert status == 200
    assert body["strategy"]["weights"] == {"person": 2.0, "misc": 1.5}
    status, body = _put(backend, {"weights": {"location": 3}})
    assert status == 200
    assert body["strategy"]["weights"] == {"location": 3.0}
    status, body = _put(backend, {"weights": {}})
    assert status == 200
    assert body["strategy"]["weights"] == {}


def test_rescorings_newest_first_and_the_last_one_with_the_strategy(backend: Backend) -> None:
    assert backend.client.get(f"/api/projects/{backend.project_id}/rescorings").json() == []
    ran_with = [SamplingStrategy(), SamplingStrategy(measure="entropy", diversity=True, type_weights=False)]
    with open_db(backend.settings.database_url) as db:
        project = project_by_id(db, backend.project_id)
        for number, strategy in enumerate(ran_with):
            record_rescoring(
                db,
                project,
                model_version=f"v{number + 1}",
                strategy=strategy,
                representation="tok2vec-mean" if strategy.diversity else "none",
                pool=40 + number,
                batch=[7, 3, 9][: number + 2],
            )
        db.commit()
    reply = backend.client.get(f"/api/projects/{backend.project_id}/rescorings")
    assert reply.status_code == 200, reply.text
    rows = reply.json()
    assert [r["model_version"] for r in rows] == ["v2", "v1"]
    newest = rows[0]
    assert newest["strategy"] == ran_with[1].model_dump()
    assert newest["described"] == "entropy + diversity (modAL alpha, model vectors)"
    assert (newest["representation"], newest["pool"], newest["batch"]) == ("tok2vec-mean", 41, [7, 3, 9])
    assert newest["created_at"][:2] == "20"
    assert backend.client.get(f"/api/projects/{backend.project_id}/sampling").json()["last_rescoring"] == newest
    assert backend.client.get("/api/projects/999999/rescorings").status_code == 404


def test_openapi_describes_the_answers(backend: Backend) -> None:
    spec = backend.client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]

    def answer(path: str, method: str) -> Any:
        return spec["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]

    assert answer("/api/projects/{project_id}/sampling", "get") == {"$ref": "#/components/schemas/SamplingOut"}
    assert answer("/api/projects/{project_id}/sampling", "put") == {"$ref": "#/components/schemas/SamplingOut"}
    listed = answer("/api/projects/{project_id}/rescorings", "get")
    assert listed["items"] == {"$ref": "#/components/schemas/RescoringOut"}
    assert {"strategy", "described", "measures", "last_rescoring"} <= set(schemas["SamplingOut"]["properties"])
    assert {"model_version", "strategy", "pool", "batch"} <= set(schemas["RescoringOut"]["properties"])
    assert "measure" in schemas["SamplingStrategy"]["properties"]


def _cli(backend: Backend, *args: str) -> subprocess.CompletedProcess[str]:
    """``nerloop project strategy`` as a user runs it: the installed console script, in its own process."""
    s = backend.settings
    env = {**os.environ, "NER_DATABASE_URL": s.database_url, "NER_REDIS_URL": s.redis_url}
    return subprocess.run(
        [NERLOOP, "project", "strategy", str(backend.project_id), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _cli_in_process(backend: Backend, monkeypatch: pytest.MonkeyPatch, *args: str) -> Result:
    """The same command through Typer's runner: the same code, without a process start (seconds each here)."""
    monkeypatch.setenv("NER_DATABASE_URL", backend.settings.database_url)
    monkeypatch.setenv("NER_REDIS_URL", backend.settings.redis_url)
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, ["project", "strategy", str(backend.project_id), *args])
    finally:
        get_settings.cache_clear()


# the command reads and writes through the service the API tests above cover on both databases
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_nerloop_project_strategy_changes_and_shows(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    done = _cli(backend, "--set", "entropy", "--diversity", "on", "--diversity-weight", "0.4", "--weight", "misc=2")
    assert done.returncode == 0, done.stderr
    assert f"project {backend.project_id}: entropy + diversity (alpha 0.4, model vectors) + type weights" in (
        done.stdout
    )
    assert _strategy(backend) == DEFAULT | {
        "measure": "entropy",
        "diversity": True,
        "diversity_weight": 0.4,
        "weights": {"misc": 2.0},
    }
    changed = _cli_in_process(
        backend, monkeypatch, "--diversity-weight", "auto", "--clear-weights", "--type-weights", "off"
    )
    assert changed.exit_code == 0, changed.output
    assert _strategy(backend) == DEFAULT | {"measure": "entropy", "diversity": True, "type_weights": False}

    refused = _cli_in_process(backend, monkeypatch, "--diversity", "maybe", "--weight", "planet=2")
    assert refused.exit_code != 0
    assert "--diversity" in refused.output
    unknown = _cli_in_process(backend, monkeypatch, "--weight", "planet=2")
    assert unknown.exit_code != 0
    assert "planet" in unknown.output
    assert _strategy(backend)["weights"] == {}  # nothing changed by the refusals
