"""The full ``nerloop`` command: ml's and the backend's commands, plus workers, retrains and rollbacks."""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer

from backend.adapters.jobs import CeleryJobQueue, TaskName
from backend.cli import app
from backend.db.models import ModelVersion, TrainingRun
from backend.db.session import make_engine, session_factory, session_scope, upgrade
from backend.services import training
from backend.services.errors import ServiceError
from backend.services.projects import project_by_id
from backend.settings import get_settings
from ml import cli as ml_cli
from workers.celery_app import QUEUES, make_celery

model_app = typer.Typer(help="Model versions.", no_args_is_help=True)
app.add_typer(model_app, name="model")


@app.command()
def worker(
    queues: Annotated[str, typer.Option(help="Comma-separated queues: train, score, llm.")] = ",".join(QUEUES),
    concurrency: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "info",
) -> None:
    """Run a Celery worker on the given queues (a GPU host serves only `train`)."""
    names = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = sorted(set(names) - set(QUEUES))
    if unknown:
        raise ml_cli.fail(f"unknown queue(s) {', '.join(unknown)}; choose from {', '.join(QUEUES)}")
    settings = get_settings()
    upgrade(settings.database_url)
    celery = make_celery(settings)
    celery.worker_main(
        [
            "worker",
            f"--queues={','.join(names)}",
            f"--concurrency={concurrency}",
            f"--loglevel={loglevel}",
            "--pool=prefork",
            "--without-gossip",
            "--without-mingle",
        ]
    )


@app.command()
def retrain(
    project: Annotated[int, typer.Option(help="nerloop project id.")],
    wait: Annotated[bool, typer.Option(help="Follow the run's progress until it ends.")] = True,
) -> None:
    """Start a training run now (a no-op if one exists for the current label watermark)."""
    settings = get_settings()
    sessions = session_factory(make_engine(settings.database_url))
    with ml_cli.errors(ServiceError), session_scope(sessions) as db:
        run, created = training.manual_run(db, project_by_id(db, project), trigger="cli")
        run_id = run.id
    if created:
        CeleryJobQueue(settings.redis_url).enqueue(TaskName.TRAIN_RUN, run_id)
    typer.echo(f"run {run_id} {'queued' if created else 'already exists for this watermark'}")
    if wait:
        _follow(sessions, run_id)


def _follow(sessions: object, run_id: int) -> None:
    last = ""
    while True:
        with session_scope(sessions) as db:  # type: ignore[arg-type]
            run = db.get(TrainingRun, run_id)
            assert run is not None
            line = f"run {run.id}: {run.status} [{run.stage}] {run.progress:6.1%}"
            if run.eta_s is not None and run.status == "running":
                line += f" ETA {run.eta_s:.0f}s"
            done = run.status in training.FINAL
            detail = run.error or run.details.get("decision", "")
        if line != last:
            typer.echo(line, err=True)
            last = line
        if done:
            typer.echo(f"{line} {detail}")
            raise typer.Exit(0 if run.status == "succeeded" else 1)
        time.sleep(2)


@app.command()
def runs(project: Annotated[int, typer.Option(help="nerloop project id.")]) -> None:
    """List a project's training runs with their status and progress."""
    settings = get_settings()
    with session_scope(session_factory(make_engine(settings.database_url))) as db:
        for run in db.query(TrainingRun).filter_by(project_id=project).order_by(TrainingRun.id):
            typer.echo(
                f"{run.id:>5} {run.trigger:<9} watermark {run.annotation_watermark:>6} {run.status:<9} "
                f"{run.stage:<10} {run.progress:6.1%} {run.model_version or ''} {run.error or ''}"
            )


@model_app.command("list")
def model_list(project: Annotated[int, typer.Option(help="nerloop project id.")]) -> None:
    """A project's model versions; the serving one is marked."""
    settings = get_settings()
    with ml_cli.errors(ServiceError), session_scope(session_factory(make_engine(settings.database_url))) as db:
        current = project_by_id(db, project).current_version
        for row in db.query(ModelVersion).filter_by(project_id=project).order_by(ModelVersion.id):
            micro = row.metrics.get("micro", {}).get("f1", 0.0)
            typer.echo(
                f"{'*' if row.version == current else ' '} {row.version}  {row.status:<9} dev micro F1 {micro:.3f}"
            )


@model_app.command("rollback")
def model_rollback(
    project: Annotated[int, typer.Option(help="nerloop project id.")],
    version: Annotated[str, typer.Option(help="The version to serve again.")],
) -> None:
    """Serve an earlier model version again; the backend swaps to it on its next request."""
    settings = get_settings()
    with ml_cli.errors(ServiceError), session_scope(session_factory(make_engine(settings.database_url))) as db:
        training.rollback(db, project_by_id(db, project), version=version)
    if settings.label_studio.api_key is not None:
        CeleryJobQueue(settings.redis_url).enqueue(TaskName.SCORE_POOL, project)
    typer.echo(f"project {project} now serves {version}")


def main() -> None:
    """Entry point of ``nerloop``."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
