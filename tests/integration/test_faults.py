"""Faults (issue #10): a training process killed mid-run, a broker that goes away and comes back.

Real processes throughout: a `nerloop worker`, a private `redis-server` where the test stops Redis, real training.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import select

from annotation_guide import Guide
from backend.adapters.jobs import CeleryJobQueue
from backend.api.app import create_app
from backend.db.models import AnnotationEvent, ModelVersion, Project, TrainingRun, utcnow
from backend.services.annotations import ingest
from backend.services.projects import register_project
from backend.services.run_liveness import expire_stale_runs, remove_leftovers, run_heartbeat
from backend.services.sweep import resend_queued_runs, start_due_retrains
from backend.services.training import AUTOMATIC_ATTEMPTS, manual_run, request_run, retrain_if_due
from backend.settings import LLMSettings, Settings
from ml.training import TrainedModel
from tests.conftest import free_port, open_db, promote, sessions_for, stop_process
from tests.integration.conftest import conll_events, wait_until

pytestmark = [pytest.mark.integration]
NERLOOP = str(Path(sys.executable).parent / "nerloop")
LS_PROJECT = 41
THRESHOLD = 12


def _runs(url: str) -> list[TrainingRun]:
    with open_db(url) as db:
        return list(db.scalars(select(TrainingRun).order_by(TrainingRun.id)))


# ---------------------------------------------------------------- the rules, on both databases, no worker


def test_a_run_that_stopped_beating_is_failed_with_a_reason_and_its_leftovers_removed(
    database_url: str, conll_guide: Guide, small_model: TrainedModel, tmp_path: Path
) -> None:
    with open_db(database_url) as db:
        project = register_project(db, ls_project_id=LS_PROJECT, guide=conll_guide)
        promote(db, project, small_model)
        dead, _ = request_run(db, project, trigger="cli", watermark=5)
        alive, _ = request_run(db, project, trigger="cli", watermark=6)
        never_beat, _ = request_run(db, project, trigger="cli", watermark=7)
        queued, _ = request_run(db, project, trigger="cli", watermark=8)
        # a recorded version's directory is never removed, even where a run says it wrote
        pointing_at_a_version, _ = request_run(db, project, trigger="cli", watermark=9)
        leftover = tmp_path / "project-1" / ".run-1-1"
        (leftover / ".training-x").mkdir(parents=True)
        orphan = tmp_path / "project-1" / "20260101T000000Z-cnn-deadbeef"  # moved into place, never recorded
        orphan.mkdir()
        now = utcnow()
        dead.status, dead.stage, dead.started_at = "running", "evaluate", now - timedelta(seconds=400)
        dead.heartbeat_at, dead.output_dir, dead.model_version = (
            now - timedelta(seconds=212),
            str(leftover),
            orphan.name,
        )
        alive.status, alive.started_at, alive.heartbeat_at = "running", now - timedelta(hours=5), now
        never_beat.status, never_beat.started_at = "running", now - timedelta(seconds=300)
        pointing_at_a_version.status, pointing_at_a_version.started_at = "running", now - timedelta(seconds=300)
        pointing_at_a_version.output_dir = str(small_model.path.parent)
        pointing_at_a_version.model_version = small_model.version
        db.flush()
        expired = expire_stale_runs(db, timeout_s=180)
        assert sorted(expired) == sorted([dead.id, never_beat.id, pointing_at_a_version.id])
        assert dead.status == "failed"
        assert dead.finished_at is not None
        assert dead.error is not None
        assert dead.error.startswith("no heartbeat for 212 s: the worker was lost")
        assert "during 'evaluate'; retrain to try again" in dead.error
        assert not leftover.exists()
        assert not orphan.exists()
        # a long training that beats lives on
        assert alive.status == "running"
        assert queued.status == "queued"
        assert small_model.path.is_dir()
        assert (small_model.path.parent).is_dir()
        assert remove_leftovers(db, pointing_at_a_version) == []


def test_the_heartbeat_beats_while_the_work_is_silent_and_stops_once_the_run_is_not_its_own(
    database_url: str, conll_guide: Guide
) -> None:
    with open_db(database_url) as db:
        project = register_project(db, ls_project_id=LS_PROJECT, guide=conll_guide)
        run, _ = request_run(db, project, trigger="cli", watermark=5)
        run.status, run.attempt, run.started_at = "running", 1, utcnow() - timedelta(hours=1)
        run.heartbeat_at = utcnow() - timedelta(hours=1)
        run_id = run.id

    def expire(timeout_s: float) -> list[int]:
        with open_db(database_url) as db:
            return expire_stale_runs(db, timeout_s=timeout_s)

    with sessions_for(database_url) as sessions, run_heartbeat(sessions, run_id, attempt=1, interval_s=0.2) as beat:
        for _ in range(3):  # no progress is reported at all: the thread alone keeps the run alive
            time.sleep(0.5)
            assert expire(timeout_s=10) == []  # its heartbeat is an hour old but for the thread
        with open_db(database_url) as db:  # another attempt owns the run now (it was expired and asked for again)
            db.get(TrainingRun, run_id).attempt = 2  # type: ignore[union-attr]
        wait_until(lambda: not beat.beating, 10, "the heartbeat kept beating for an attempt that is over")
    with open_db(database_url) as db:
        assert db.get(TrainingRun, run_id).status == "running"  # type: ignore[union-attr]


def test_a_failed_run_does_not_block_retraining_but_the_sweep_does_not_retry_it(
    database_url: str, redis_url: str, conll_guide: Guide, shared_data: Path
) -> None:
    with open_db(database_url) as db:
        project = register_project(db, ls_project_id=LS_PROJECT, guide=conll_guide, retrain_threshold=THRESHOLD)
        for event in conll_events(shared_data, conll_guide, THRESHOLD, ls_project=LS_PROJECT):
            ingest(db, event)
        project_id = project.id
    with sessions_for(database_url) as sessions:
        jobs = CeleryJobQueue(redis_url)
        # the labels crossed the threshold but the event's job was lost: the sweep starts the run and sends it
        started = start_due_retrains(sessions, jobs)
        assert len(started) == 1
        assert start_due_retrains(sessions, jobs) == []
        assert redis.Redis.from_url(redis_url).llen("train") == 1
        with open_db(database_url) as db:
            run = db.get(TrainingRun, started[0])
            assert run is not None
            assert run.annotation_watermark == THRESHOLD
            run.status, run.error = "failed", "no heartbeat for 200 s: ..."
        assert start_due_retrains(sessions, jobs) == []  # a run that always dies is not retried by the sweep
        with open_db(database_url) as db:  # a label event (or a request) asks for it again
            again = retrain_if_due(db, db.get(Project, project_id))  # type: ignore[arg-type]
            assert again is not None
            assert again.id == started[0]
            assert again.status == "queued"
            assert again.error is None
            assert again.output_dir is None
            assert again.resends == 0
            # a run that failed on each of its automatic attempts waits for a person
            again.status, again.attempt = "failed", AUTOMATIC_ATTEMPTS
        with open_db(database_url) as db:
            assert retrain_if_due(db, db.get(Project, project_id)) is None  # type: ignore[arg-type]
            run, created = manual_run(db, db.get(Project, project_id), trigger="cli")  # type: ignore[arg-type]
            assert created
            assert run.id == started[0]
            assert run.status == "queued"


def test_queued_runs_are_resent_with_backoff(database_url: str, redis_url: str, conll_guide: Guide) -> None:
    queue = redis.Redis.from_url(redis_url)
    with open_db(database_url) as db:
        project = register_project(db, ls_project_id=LS_PROJECT, guide=conll_guide)
        old, _ = request_run(db, project, trigger="cli", watermark=5)
        request_run(db, project, trigger="cli", watermark=6)  # just queued: its message is surely on its way
        old.created_at = utcnow() - timedelta(seconds=200)
        old_id = old.id
    with sessions_for(database_url) as sessions:
        jobs = CeleryJobQueue(redis_url)
        resend = lambda: resend_queued_runs(sessions, jobs, first_after_s=180, max_interval_s=3600)  # noqa: E731
        assert resend() == [old_id]
        assert queue.llen("train") == 1
        assert resend() == []
        for waited, expected in ((200, []), (400, [old_id]), (400, []), (800, [old_id])):  # 180 s, 360 s, 720 s
            with open_db(database_url) as db:
                run = db.get(TrainingRun, old_id)
                assert run is not None
                run.sent_at = utcnow() - timedelta(seconds=waited)
            assert resend() == expected, waited
    with open_db(database_url) as db:
        assert db.get(TrainingRun, old_id).resends == 3  # type: ignore[union-attr]


# ---------------------------------------------------------------- real worker, real training, real kill


def _worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "NER_DATABASE_URL": settings.database_url,
        "NER_REDIS_URL": settings.redis_url,
        "NER_MODEL_ROOT": str(settings.model_root),
        "NER_RETRAIN_MAX_STEPS": str(settings.retrain_max_steps),
        "NER_DEV_FRACTION": str(settings.dev_fraction),
        "NER_RUN_HEARTBEAT_TIMEOUT_S": str(settings.run_heartbeat_timeout_s),
        **extra,
    }


@contextmanager
def _worker(settings: Settings, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("w") as out:
        worker = subprocess.Popen(
            [NERLOOP, "worker", "--queues", "train,score,llm", "--concurrency", "1"],
            env=_worker_env(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: "ready" in log.read_text(), 90, lambda: f"the worker did not start:\n{log.read_text()}")
        yield worker
    finally:
        stop_process(worker)


def _settings(database_url: str, redis_url: str, model_root: Path) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        model_root=model_root,
        retrain_max_steps=200,
        dev_fraction=0.3,
        run_heartbeat_timeout_s=5,
        sweep_interval_s=1,
        llm=LLMSettings(base_url="http://127.0.0.1:1/v1"),
    )


def _register(database_url: str, guide: Guide) -> int:
    with open_db(database_url) as db:
        return register_project(db, ls_project_id=LS_PROJECT, guide=guide, retrain_threshold=THRESHOLD).id


@pytest.mark.slow
def test_a_killed_training_is_failed_within_the_heartbeat_timeout_and_the_next_event_retrains(
    database_url: str, redis_url: str, conll_guide: Guide, shared_data: Path, tmp_path: Path
) -> None:
    settings = _settings(database_url, redis_url, tmp_path / "models")
    _register(database_url, conll_guide)
    events = conll_events(shared_data, conll_guide, THRESHOLD + 1, ls_project=LS_PROJECT)
    log = tmp_path / "worker.log"
    with _worker(settings, log), TestClient(create_app(settings)) as client:
        for event in events[:THRESHOLD]:  # (an event that cannot start a run may need no job: no "queued")
            assert client.post("/webhook", json=event).json().get("queued", True) is True

        def training() -> TrainingRun | None:
            runs = _runs(database_url)
            run = runs[0] if runs else None
            if run is None or run.stage != "train" or not run.output_dir or not run.pid:
                return None
            return run if any(Path(run.output_dir).glob(".training-*")) else None

        wait_until(training, 90, lambda: f"no run reached training: {_runs(database_url)}\n{log.read_text()}")
        run = training()
        assert run is not None
        assert run.pid is not None
        assert run.output_dir is not None
        assert client.get(f"/api/runs/{run.id}").json()["worker"] == f"{run.host}:{run.pid}"
        os.kill(run.pid, signal.SIGKILL)  # as the out-of-memory killer does: no except, no finally
        # failed within the heartbeat timeout (5 s here) plus a sweep period, not hours; 60 s of slack for a busy CI
        wait_until(lambda: _runs(database_url)[0].status == "failed", 60, lambda: f"not expired: {_runs(database_url)}")
        failed = _runs(database_url)[0]
        assert failed.error is not None
        assert failed.error.startswith("no heartbeat for ")
        assert "the worker was lost" in failed.error
        assert "during 'train'; retrain to try again" in failed.error
        assert not Path(run.output_dir).exists()  # the half-written version is gone
        assert list((tmp_path / "models").glob("project-*/2*")) == []

        # the next label event starts the run again, and this time it ends
        assert client.post("/webhook", json=events[THRESHOLD]).json()["queued"] is True
        wait_until(
            lambda: _runs(database_url)[0].status in ("succeeded", "rejected"),
            120,
            lambda: f"no retrain after the kill: {_runs(database_url)}\n{log.read_text()}",
        )
    again = _runs(database_url)
    assert len(again) == 1, again
    assert again[0].status == "succeeded", again[0].error
    assert again[0].attempt == 2, again[0].error
    assert again[0].pid != run.pid
    assert again[0].error is None
    with open_db(database_url) as db:
        version = db.scalars(select(ModelVersion)).one()
    assert Path(version.path).is_dir()
    assert Path(version.path).parent == Path(run.output_dir).parent
    assert [p.name for p in Path(version.path).parent.iterdir() if p.name.startswith(".run-")] == []


def _training_run(database_url: str) -> TrainingRun | None:
    """The first run, once its process trains and has written into its output directory."""
    runs = _runs(database_url)
    run = runs[0] if runs else None
    if run is None or run.stage != "train" or not run.output_dir or not run.pid:
        return None
    return run if any(Path(run.output_dir).glob(".training-*")) else None


@pytest.mark.slow
def test_killing_the_worker_main_process_leaves_no_training_message_behind(
    database_url: str, redis_url: str, conll_guide: Guide, shared_data: Path, tmp_path: Path
) -> None:
    settings = _settings(database_url, redis_url, tmp_path / "models")
    _register(database_url, conll_guide)
    events = conll_events(shared_data, conll_guide, THRESHOLD + 1, ls_project=LS_PROJECT)
    trainer_pid = None
    with TestClient(create_app(settings)) as client:
        try:
            with _worker(settings, tmp_path / "worker.log") as worker:
                for event in events[:THRESHOLD]:
                    client.post("/webhook", json=event)
                wait_until(
                    lambda: _training_run(database_url), 90, lambda: f"no run reached training: {_runs(database_url)}"
                )
                trainer_pid = _training_run(database_url).pid  # type: ignore[union-attr]
                os.kill(worker.pid, signal.SIGKILL)
                worker.wait()
            # the training message was acknowledged when the training started: nothing waits for the visibility
            # timeout (hours) in Redis's unacked set
            unacked = redis.Redis.from_url(redis_url).hvals("unacked")
            assert not [m for m in unacked if b"workers.train_run" in m], unacked
            # its training process either finishes the run or dies and is expired: the run ends, within minutes
            wait_until(
                lambda: _runs(database_url)[0].status in ("succeeded", "failed"), 120, lambda: str(_runs(database_url))
            )
            with _worker(settings, tmp_path / "worker-2.log"):  # a new worker; the next label event trains if needed
                client.post("/webhook", json=events[THRESHOLD])
                wait_until(
                    lambda: [r.status for r in _runs(database_url)] == ["succeeded"],
                    120,
                    lambda: f"no model after the worker was killed: {_runs(database_url)}",
                )
        finally:
            if trainer_pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(trainer_pid, signal.SIGKILL)


# ---------------------------------------------------------------- a broker that goes away and comes back


def _start_redis(port: int, folder: Path) -> subprocess.Popen[bytes]:
    """A private Redis on 127.0.0.1:port without persistence (a restart loses its queues: the worst case)."""
    process = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(host="127.0.0.1", port=port)

    def answers() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    wait_until(answers, 20, f"redis-server on port {port} did not start")
    return process


def _stop(process: subprocess.Popen[bytes]) -> None:
    stop_process(process, 30)


@pytest.mark.slow
def test_events_stored_while_redis_was_away_are_processed_by_the_running_worker(
    database_url: str, conll_guide: Guide, shared_data: Path, tmp_path: Path
) -> None:
    port = free_port()
    settings = _settings(database_url, f"redis://127.0.0.1:{port}/0", tmp_path / "models")
    _register(database_url, conll_guide)
    log = tmp_path / "worker.log"
    broker = _start_redis(port, tmp_path)
    try:
        with _worker(settings, log) as worker, TestClient(create_app(settings)) as client:
            _stop(broker)  # the worker keeps running and reconnecting
            replies = [
                client.post("/webhook", json=e).json()
                for e in conll_events(shared_data, conll_guide, THRESHOLD, ls_project=LS_PROJECT)
            ]
            assert [r["status"] for r in replies] == ["stored"] * THRESHOLD
            assert replies[-1]["queued"] is False  # the one that crosses the threshold: its job could not be sent
            assert all(r.get("queued", False) is False for r in replies)
            broker = _start_redis(port, tmp_path)  # back, and empty: as after a restart without persistence
            wait_until(
                lambda: [r.status for r in _runs(database_url)] == ["succeeded"],
                150,
                lambda: f"the worker did not catch up: {_runs(database_url)}\n{log.read_text()}",
            )
            with open_db(database_url) as db:
                assert all(e.enqueued for e in db.scalars(select(AnnotationEvent)))
            assert worker.poll() is None  # the same worker process, never restarted
    finally:
        _stop(broker)
