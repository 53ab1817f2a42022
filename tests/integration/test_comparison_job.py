"""A project's prompting-vs-fine-tuning comparison (issue #13) as a job.

Real PostgreSQL, Redis, a real Celery worker process on the ``train`` queue, real CNN trainings and the tiny SmolLM2
GGUF behind a real llama.cpp server, on the project's own labels (CoNLL sentences labelled through the webhook path);
its result reaches the dashboard's JSON.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from annotation_guide import Guide
from backend.api.app import create_app
from backend.services.annotations import ingest
from backend.services.projects import register_project
from backend.settings import LLMSettings, Settings, get_settings
from ml.costs import CostSettings, labelling_cost
from ml.promotion import held_out_role
from tests.conftest import open_db, stop_process
from tests.integration.conftest import conll_events, wait_until
from workers.cli import app

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NERLOOP = str(Path(sys.executable).parent / "nerloop")
LS_PROJECT, TASKS, DEV_FRACTION, LEAD_TIME_S = 41, 40, 0.4, 3.5  # conll_events records lead_time 3.5 s
# generous: on a loaded 2-core machine the tiny model's first answer (the whole guide to evaluate) took minutes
LLM_TIMEOUT_S = 600
OPTIONS = {"shots": [0, 1], "strategies": ["similar"], "sizes": [10, None], "limit_llm": 2, "max_steps": 30}
CLI_OPTIONS = [
    "--shots",
    "0,1",
    "--strategies",
    "similar",
    "--sizes",
    "10,all",
    "--limit-llm",
    "2",
    "--max-steps",
    "30",
]


@pytest.fixture
def worker_settings(database_url: str, redis_url: str, llama_server: str, tmp_path: Path) -> Iterator[Settings]:
    """Settings shared by the app and a `nerloop worker --queues train` process (stopped afterwards)."""
    settings = Settings(
        database_url=database_url,
        redis_url=redis_url,
        model_root=tmp_path / "models",
        dev_fraction=DEV_FRACTION,
        llm=LLMSettings(base_url=llama_server, max_tokens=48, timeout_s=LLM_TIMEOUT_S, max_retries=1),
    )
    env = {
        **os.environ,
        "NER_DATABASE_URL": database_url,
        "NER_REDIS_URL": redis_url,
        "NER_MODEL_ROOT": str(settings.model_root),
        "NER_DEV_FRACTION": str(DEV_FRACTION),
        "NER_LLM__BASE_URL": llama_server,
        "NER_LLM__MAX_TOKENS": "48",
        "NER_LLM__TIMEOUT_S": str(LLM_TIMEOUT_S),
        "NER_LLM__MAX_RETRIES": "1",
    }
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen(
            [NERLOOP, "worker", "--queues", "train", "--concurrency", "1"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: "ready" in log.read_text(), 300, f"the worker did not start; see {log}")
        yield settings
    finally:
        stop_process(worker)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_projects_comparison_runs_on_the_worker_and_reaches_the_dashboard(
    worker_settings: Settings, shared_data: Path, conll_guide: Guide, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = worker_settings
    events = conll_events(shared_data, conll_guide, TASKS, ls_project=LS_PROJECT)
    with open_db(settings.database_url) as db:
        project_id = register_project(db, ls_project_id=LS_PROJECT, guide=conll_guide, retrain_threshold=1000).id
        for event in events:
            ingest(db, event)
    roles = Counter(held_out_role(str(LS_PROJECT), e["task"]["id"], fraction=DEV_FRACTION) for e in events)
    # the hash split of 40
    assert roles["train"] > 10
    assert roles["dev"]
    assert roles["test"] >= OPTIONS["limit_llm"]

    with TestClient(create_app(settings)) as client:
        assert client.get(f"/api/projects/{project_id}/comparison").json() is None
        started = client.post(f"/api/projects/{project_id}/comparison", json=OPTIONS)
        assert started.status_code == 202, started.text
        assert started.json()["created"]
        assert started.json()["comparison"]["label_watermark"] == TASKS
        seen: list[dict[str, Any]] = []

        def ended() -> bool:
            seen.append(client.get(f"/api/projects/{project_id}/comparison").json())
            return seen[-1]["status"] in ("succeeded", "failed")

        wait_until(ended, 1800, lambda: f"the comparison did not end: {seen[-1]}")
        latest = seen[-1]
        assert latest["status"] == "succeeded", latest["error"]
        running = [s for s in seen if s["status"] == "running"]
        # its progress shows while it runs
        assert running
        assert all(0.0 <= s["progress"] <= 1.0 for s in running)
        assert latest["progress"] == 1.0
        assert latest["stage"] == "done"
        board = client.get(f"/api/projects/{project_id}/progress").json()
        again = client.post(f"/api/projects/{project_id}/comparison", json=OPTIONS).json()

    result = latest["result"]
    assert board["comparison"] == latest  # the dashboard's JSON carries the same latest comparison
    # same labels and options: a no-op
    assert not again["created"]
    assert again["comparison"]["id"] == latest["id"]
    assert result["label_watermark"] == TASKS
    assert result["finished_at"]
    # the project's own split: training tasks train, dev tasks choose checkpoints, test tasks score every row
    assert (result["train_pool_docs"], result["dev_docs"]) == (roles["train"], roles["dev"])
    assert (result["test_docs"], result["all_test_docs"]) == (OPTIONS["limit_llm"], roles["test"])
    names = [row["name"] for row in result["rows"]]
    assert names == [
        "LLM zero-shot",
        "LLM similar 1-shot",
        "cnn 10 docs",
        f"cnn {roles['train']} docs",
        "router cnn + LLM similar 1-shot",
    ]
    rows = {row["name"]: row for row in result["rows"]}
    for row in result["rows"]:
        low, high = row["micro_f1_interval"] or (row["micro_f1"], row["micro_f1"])
        assert 0.0 <= low <= row["micro_f1"] <= high <= 1.0
    for name in names[2:4]:  # fine-tuned rows: also on the whole test set, beside the LLM's sample
        assert rows[name]["full_test"] is not None
        assert set(rows[name]["full_test"]["per_type"]) == set(conll_guide.labels)
    # labelling priced with Label Studio's recorded lead_time: time per task over the labels per task
    entities = sum(len(e["annotation"]["result"]) for e in events)
    seconds_per_label = LEAD_TIME_S * TASKS / entities
    assert result["costs"]["seconds_per_label"] == pytest.approx(seconds_per_label)
    assert result["seconds_per_label_source"].startswith("Label Studio lead_time")
    cnn = rows[f"cnn {roles['train']} docs"]
    assert cnn["labelling_cost"] == pytest.approx(
        labelling_cost(cnn["labels"], CostSettings(**result["costs"]))  # labels = gold entities of the training tasks
    )
    assert {b["row"] for b in result["break_even"]} == set(names[2:])
    assert (Path(result["report_dir"]) / "report.html").is_file()

    # the CLI: the same options at the same labels find the comparison done and print its rows
    monkeypatch.setenv("NER_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("NER_REDIS_URL", settings.redis_url)
    get_settings.cache_clear()
    try:
        shown = CliRunner().invoke(app, ["project", "compare", "--project", str(project_id), *CLI_OPTIONS])
    finally:
        get_settings.cache_clear()
    assert shown.exit_code == 0, shown.output
    assert "already exists" in shown.output
    assert "LLM similar 1-shot" in shown.output
    assert "break-even" in shown.output
