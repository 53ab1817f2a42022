"""Issue #12 on a real database with real trainings.

The figures of a run come from held-out test documents that neither selected its checkpoint nor fitted its calibration;
the gate's decision is recorded per type; a project with too few held-out labels trains and serves, its figures marked
not yet measurable.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from annotation_guide import Guide
from backend.api.dashboard import render
from backend.db.models import ModelVersion, Project, TrainingRun
from backend.db.session import upgrade
from backend.services.annotations import ingest
from backend.services.label_state import StoredLabelsSource
from backend.services.progress import project_progress
from backend.services.projects import register_project
from backend.services.training import Trainer, manual_run
from backend.settings import Settings
from ml.model_store import read_meta
from ml.promotion import held_out_role
from tests.conftest import open_db, sessions_for
from tests.integration.conftest import LS_PROJECT, _postgres_database, conll_events

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NERLOOP = str(Path(sys.executable).parent / "nerloop")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    generator = _postgres_database()
    url = next(generator)
    upgrade(url)
    yield url
    next(generator, None)


def _nerloop(database_url: str, *args: str) -> str:
    """What a ``nerloop`` command prints for the database."""
    env = {**os.environ, "NER_DATABASE_URL": database_url}
    return subprocess.run([NERLOOP, *args], env=env, capture_output=True, text=True, timeout=120, check=True).stdout


def _run(settings: Settings, project_id: int) -> TrainingRun:
    with open_db(settings.database_url) as db:
        project = db.get(Project, project_id)
        assert project is not None
        run_id = manual_run(db, project, trigger="cli")[0].id
    with sessions_for(settings.database_url) as sessions:
        Trainer(sessions, settings, StoredLabelsSource).run(run_id)
    with open_db(settings.database_url) as db:
        run = db.get(TrainingRun, run_id)
        assert run is not None
        assert run.status in ("succeeded", "rejected"), run.error
        db.expunge(run)
        return run


def test_runs_report_the_test_split_and_the_gate_per_type(
    postgres_url: str, shared_data: Path, conll_guide: Guide, tmp_path: Path
) -> None:
    settings = Settings(database_url=postgres_url, model_root=tmp_path, retrain_max_steps=60, dev_fraction=0.5)
    events, more = conll_events(shared_data, conll_guide, 80), conll_events(shared_data, conll_guide, 1, first=80)
    with open_db(postgres_url) as db:
        project = register_project(db, ls_project_id=LS_PROJECT, guide=conll_guide, retrain_threshold=10_000)
        project_id = project.id
        for body in events:
            ingest(db, body)
    roles = [held_out_role(str(LS_PROJECT), e["task"]["id"], fraction=0.5) for e in events]  # type: ignore[index]

    first = _run(settings, project_id)
    assert first.status == "succeeded"
    assert first.details["decision"] == "no model serves yet"
    counts = {role: roles.count(role) for role in ("train", "dev", "test")}
    assert (first.details["train_docs"], first.details["dev_docs"], first.details["test_docs"]) == (
        counts["train"],
        counts["dev"],
        counts["test"],
    )
    low, high = first.details["test_micro_f1_interval"]
    assert low <= first.details["test_micro_f1"] <= high

    with open_db(postgres_url) as db:
        ingest(db, more[0])  # one more label: a new watermark, a new run
    second = _run(settings, project_id)  # the gate compares it with the first on the same test documents, paired
    gate = second.details["gate"]
    assert set(gate) == set(conll_guide.labels)
    for label, comparison in gate.items():
        assert comparison["difference"] == pytest.approx(comparison["candidate_f1"] - comparison["serving_f1"])
        if comparison["support"] > 0:
            interval = comparison["interval"]
            assert interval[0] <= comparison["difference"] <= interval[1], label
        assert comparison["blocks"] == (
            comparison["interval"] is not None and comparison["interval"][1] < -settings.promotion_tolerance
        )
        assert comparison["reason"]
    assert (second.status == "rejected") == any(c["blocks"] for c in gate.values())

    with open_db(postgres_url) as db:
        versions = list(db.scalars(select(ModelVersion).order_by(ModelVersion.id)))
        data = project_progress(db, db.get(Project, project_id))  # type: ignore[arg-type]
    assert all(v.metrics["evaluated_on"] == "test" and v.metrics["n_docs"] == counts["test"] for v in versions)
    assert all(read_meta(Path(v.path)).dev_metrics.n_docs == counts["dev"] for v in versions)
    assert [r["id"] for r in data["runs"]] == [second.id, first.id]
    assert data["runs"][0]["details"]["gate"] == gate
    page = render(data)  # the dashboard shows the runs, their decisions and the gate of the newest
    assert f"Promotion gate of run {second.id}" in page
    assert all(f"<td>{label}</td>" in page for label in gate)
    listed = _nerloop(postgres_url, "runs", "--project", str(project_id))
    assert f"gate: {second.details['decision']}" in listed
    assert all(f"{label:<16}" in listed for label in gate)
    assert ("BLOCKS" in listed) == (second.status == "rejected")
    versions_listed = _nerloop(postgres_url, "model", "list", "--project", str(project_id))
    assert versions_listed.count("test micro F1") == 2
    assert f"({counts['test']} docs)" in versions_listed
    shown = {v["version"]: v for v in data["versions"]}
    for v in versions:
        assert shown[v.version]["evaluated_on"] == "test"
        assert shown[v.version]["f1_interval"]["person"] == v.metrics["per_type"]["person"]["f1_interval"]


def test_a_project_without_held_out_labels_trains_serves_and_says_not_yet_measurable(
    postgres_url: str, shared_data: Path, conll_guide: Guide, tmp_path: Path
) -> None:
    """The demo's first retrain failed with "20 training and 0 dev tasks are labelled": now it serves."""
    settings = Settings(database_url=postgres_url, model_root=tmp_path, retrain_max_steps=30, dev_fraction=0.2)
    events = [
        e
        for e in conll_events(shared_data, conll_guide, 60)
        if held_out_role(str(LS_PROJECT), e["task"]["id"], fraction=0.2) == "train"  # type: ignore[index]
    ][:20]
    with open_db(postgres_url) as db:
        project_id = register_project(db, ls_project_id=LS_PROJECT, guide=conll_guide, retrain_threshold=10_000).id
        for body in events:
            ingest(db, body)
    run = _run(settings, project_id)
    assert run.status == "succeeded"
    assert (run.details["dev_docs"], run.details["test_docs"]) == (0, 0)
    with open_db(postgres_url) as db:
        project = db.get(Project, project_id)
        assert project is not None
        assert project.current_version == run.model_version
        version = db.scalars(select(ModelVersion)).one()
        data = project_progress(db, project)
    assert read_meta(Path(version.path)).calibration.method.startswith("prior")  # no dev span to fit on
    assert all(not score["measurable"] for score in version.metrics["per_type"].values())
    assert all(t["forecast"]["reason"].startswith("not yet measurable") for t in data["types"])

    # dev tasks get labelled, still no test task: the gate compares on the dev half, flagged, rather than not at all
    dev = [
        e
        for e in conll_events(shared_data, conll_guide, 200, first=60)
        if held_out_role(str(LS_PROJECT), e["task"]["id"], fraction=0.2) == "dev"  # type: ignore[index]
    ][:6]
    with open_db(postgres_url) as db:
        for body in dev:
            ingest(db, body)
    second = _run(settings, project_id)
    assert second.details["gate_on"] == "dev"
    assert second.details["decision"].endswith("(on the dev half: no test span yet)")
    assert set(second.details["gate"]) == set(conll_guide.labels)
    assert second.details["dev_docs"] == len(dev)
