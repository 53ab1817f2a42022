"""The full ``nerloop`` command: ml's and the backend's commands, plus workers, retrains and rollbacks.

Celery, the database layer, spaCy and torch are imported inside the commands that use them: ``nerloop --help``,
``nerloop runs`` and the other light commands start at once (``bench/cli_start.py``).
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from backend.cli import app, database_errors, project_app
from backend.errors import ServiceError
from backend.settings import SettingsError, get_settings
from ml import cli as ml_cli
from workers import up as up_module
from workers.celery_app import POOLS, QUEUES
from workers.cli_compare import project_compare

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from backend.settings import Settings

model_app = typer.Typer(help="Model versions.", no_args_is_help=True)
app.add_typer(model_app, name="model")
project_app.command("compare")(project_compare)


# A training is batch work beside interactive routes: Label Studio gives a webhook 1 s, and a training takes every
# core it is given. Linux's CFS gives a process at niceness 10 about a tenth of a busy core's time against one at
# 0, so a training on the same host slows down only while the backend is busy (bench/RESULTS.md, webhook burst).
TRAIN_NICE = 10

_POOLS_HELP = ", ".join(f"--queues {q} --concurrency {n}" for q, n in POOLS)


@app.command(
    help="Run a Celery worker on the given queues (one worker per queue group).\n\n"
    f"Run one worker per queue group, as `nerloop up` and docker-compose.yml do ({_POOLS_HELP}): "
    "a worker serving several queues runs their jobs one after another in its processes, so a long LLM pass or a "
    "training delays the others' jobs. A GPU host serves only `train`. SIGTERM stops it after its current jobs "
    "(warm shutdown); SIGQUIT cancels them, and their messages go back to the queue."
)
def worker(
    queues: Annotated[str, typer.Option(help="Comma-separated queues: train, score, llm.")] = ",".join(QUEUES),
    concurrency: Annotated[int, typer.Option(min=1, help="Processes of this worker (jobs at once).")] = 1,
    hostname: Annotated[
        str | None, typer.Option(help="Celery node name (default: <queues>@<host name>); unique per worker.")
    ] = None,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "info",
    nice: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=19,
            help=f"CPU niceness added to this worker's processes (default: {TRAIN_NICE} for a worker serving only "
            "`train`, so that a training yields the CPU to the backend's webhooks and /predict on a shared host; "
            "0 else).",
        ),
    ] = None,
) -> None:
    """Run a Celery worker on ``queues`` at CPU niceness ``nice`` (the command's help says how to deploy them)."""
    import os

    from backend.db.session import upgrade
    from workers.celery_app import make_celery

    names = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = sorted(set(names) - set(QUEUES))
    if unknown or not names:
        raise ml_cli.fail(f"unknown queue(s) {', '.join(unknown) or queues!r}; choose from {', '.join(QUEUES)}")
    os.nice(nice if nice is not None else (TRAIN_NICE if names == ["train"] else 0))  # inherited by the pool
    settings = get_settings()
    upgrade(settings.database_url)
    _sweep_once(settings)
    celery = make_celery(settings)
    celery.worker_main(
        [
            "worker",
            f"--queues={','.join(names)}",
            f"--concurrency={concurrency}",
            f"--hostname={hostname or '-'.join(names) + '@%h'}",
            f"--loglevel={loglevel}",
            "--pool=prefork",
            "--without-gossip",
            "--without-mingle",
        ]
    )


def _sweep_once(settings: Settings) -> None:
    """What the broker lost or never got, and runs whose process died, before this worker takes jobs."""
    from backend.adapters.jobs import CeleryJobQueue
    from backend.db.session import make_engine, session_factory
    from backend.services.sweep import sweep

    engine = make_engine(settings.database_url)
    try:
        report = sweep(
            session_factory(engine),
            CeleryJobQueue(settings.redis_url),
            heartbeat_timeout_s=settings.run_heartbeat_timeout_s,
            max_resend_interval_s=settings.train_time_limit_s,
        )
    except Exception as exc:  # the broker is down: the worker waits for it, and the backend sweeps again later
        typer.echo(f"sweep skipped: {exc}", err=True)
        return
    finally:
        engine.dispose()
    if report:
        typer.echo(
            f"sweep: re-sent the jobs of {report.resent_events} event(s) stored while the broker was away, "
            f"failed {len(report.expired_runs)} run(s) whose process died, started {len(report.started_runs)} due "
            f"run(s), re-sent {len(report.resent_runs)} queued run(s)",
            err=True,
        )


@app.command()
def retrain(
    project: Annotated[int, typer.Option(help="nerloop project id.")],
    wait: Annotated[bool, typer.Option(help="Follow the run's progress until it ends.")] = True,
) -> None:
    """Start a training run now (a no-op if one exists for the current label watermark)."""
    from backend.adapters.jobs import CeleryJobQueue
    from backend.db.session import make_engine, session_factory, session_scope
    from backend.services import operations
    from backend.services.projects import project_by_id

    settings = get_settings()
    sessions = session_factory(make_engine(settings.database_url))
    with ml_cli.errors(ServiceError), session_scope(sessions) as db:
        jobs = CeleryJobQueue(settings.redis_url)
        run, created = operations.retrain_now(db, project_by_id(db, project), jobs=jobs, trigger="cli")
        run_id = run.id
    typer.echo(f"run {run_id} {'queued' if created else 'already exists for this watermark'}")
    if wait:
        _follow(sessions, run_id)


def _follow(sessions: sessionmaker[Session], run_id: int) -> None:
    from backend.db.session import session_scope
    from backend.services import training

    last = ""
    while True:
        with session_scope(sessions) as db:
            run = training.run_by_id(db, run_id)
            line = f"run {run.id}: {run.status} [{run.stage}] {run.progress:6.1%}"
            if run.eta_s is not None and run.status == "running":
                line += f" ETA {run.eta_s:.0f}s"
            done = run.status in training.FINAL
            detail = run.error or run.details.get("decision", "")
            warnings = list((run.details or {}).get("warnings") or [])
        if line != last:
            typer.echo(line, err=True)
            last = line
        if done:
            typer.echo(f"{line} {detail}")
            for warning in warnings:  # e.g. a model that predicts almost nothing on dev
                typer.echo(f"warning: {warning}", err=True)
            raise typer.Exit(0 if run.status == "succeeded" else 1)
        time.sleep(2)


@app.command()
def runs(project: Annotated[int, typer.Option(help="nerloop project id.")]) -> None:
    """List a project's training runs with their status and progress."""
    from backend.db.models import TrainingRun
    from backend.db.session import make_engine, session_factory, session_scope
    from backend.services.projects import project_by_id

    url = get_settings().database_url
    with (
        ml_cli.errors(ServiceError),
        database_errors(url),
        session_scope(session_factory(make_engine(url))) as db,
    ):
        project_by_id(db, project)
        for run in db.query(TrainingRun).filter_by(project_id=project).order_by(TrainingRun.id):
            typer.echo(
                f"{run.id:>5} {run.trigger:<9} watermark {run.annotation_watermark:>6} {run.status:<9} "
                f"{run.stage:<10} {run.progress:6.1%} {run.model_version or ''} {run.error or ''}"
                + (f" [{run.host}:{run.pid}]" if run.status == "running" and run.host else "")
            )
            details = run.details or {}
            if details.get("decision"):
                typer.echo(f"      gate: {details['decision']}")
            for warning in details.get("warnings") or []:
                typer.echo(f"      warning: {warning}")
            for label, c in (details.get("gate") or {}).items():  # the per-type comparison on the test half
                interval = "" if c["interval"] is None else f" [{c['interval'][0]:+.3f}, {c['interval'][1]:+.3f}]"
                typer.echo(
                    f"        {label:<16} {c['serving_f1']:.3f} -> {c['candidate_f1']:.3f} "
                    f"({c['difference']:+.3f}{interval}, n={c['support']}) "
                    f"{'BLOCKS' if c['blocks'] else 'passes'}: {c['reason']}"
                )


@model_app.command("list")
def model_list(project: Annotated[int, typer.Option(help="nerloop project id.")]) -> None:
    """A project's model versions with their micro F1, its 95% interval and the documents it was measured on.

    The documents are the held-out test half; the serving version is marked.
    """
    from backend.db.models import ModelVersion
    from backend.db.session import make_engine, session_factory, session_scope
    from backend.services.projects import metrics_of, project_by_id

    url = get_settings().database_url
    with (
        ml_cli.errors(ServiceError),
        database_errors(url),
        session_scope(session_factory(make_engine(url))) as db,
    ):
        current = project_by_id(db, project).current_version
        for row in db.query(ModelVersion).filter_by(project_id=project).order_by(ModelVersion.id):
            metrics = metrics_of(row)
            micro = metrics.micro.f1 if metrics is not None else 0.0
            interval = metrics.micro_f1_interval if metrics is not None else None
            band = "" if interval is None else f" [{interval[0]:.3f}, {interval[1]:.3f}]"
            docs = metrics.n_docs if metrics is not None else None
            typer.echo(
                f"{'*' if row.version == current else ' '} {row.version}  {row.status:<9} "
                f"{metrics.evaluated_on if metrics is not None else 'dev'} micro F1 {micro:.3f}{band}"
                + ("" if docs is None else f" ({docs} docs)")
            )


@model_app.command("rollback")
def model_rollback(
    project: Annotated[int, typer.Option(help="nerloop project id.")],
    version: Annotated[str, typer.Option(help="The version to serve again.")],
) -> None:
    """Serve an earlier model version again; the backend swaps to it on its next request."""
    from backend.adapters.jobs import CeleryJobQueue
    from backend.db.session import make_engine, session_factory, session_scope
    from backend.services import operations
    from backend.services.projects import project_by_id

    settings = get_settings()
    with ml_cli.errors(ServiceError), session_scope(session_factory(make_engine(settings.database_url))) as db:
        jobs = CeleryJobQueue(settings.redis_url)
        rescore = settings.label_studio.api_key is not None  # the rescoring pushes to Label Studio
        operations.roll_back(db, project_by_id(db, project), version=version, jobs=jobs, rescore=rescore)
    typer.echo(f"project {project} now serves {version}")


HomeOpt = Annotated[Path, typer.Option(help="State folder: database, models, logs, Label Studio data.")]


@app.command()
def up(
    home: HomeOpt = Path(".nerloop"),
    guide: Annotated[Path, typer.Option(help="Guide of the demo project.")] = up_module.ROOT
    / "annotation_guide"
    / "guides"
    / "conll2003.yaml",
    tasks: Annotated[Path | None, typer.Option(help="Texts to label (JSONL, Label Studio JSON or CoNLL).")] = None,
    ls_port: int = 8080,
    backend_port: int = 9090,
    llm_port: int = 8081,
    llm_model: Annotated[str | None, typer.Option(help="A GGUF file (the tiny SmolLM2 by default).")] = None,
    stop_timeout: Annotated[
        float, typer.Option(help="Seconds the workers get to finish their jobs when stopping; then they are cancelled.")
    ] = 30.0,
    exit_after_setup: Annotated[bool, typer.Option(help="Stop once everything runs (for checks).")] = False,
) -> None:
    """Run the whole loop here: Label Studio, LLM server, backend, workers and a demo project.

    One worker per queue group. Ctrl-C or SIGTERM stops everything (the workers first, after their current jobs).
    """
    default_tasks = up_module.ROOT.parent / "shared" / "data" / "conll2003" / "train.txt"
    cfg = up_module.UpConfig(
        home=home.resolve(),
        guide=guide,
        tasks=tasks or (default_tasks if default_tasks.exists() else None),
        task_limit=0 if tasks else 300,
        ls_port=ls_port,
        backend_port=backend_port,
        llm_port=llm_port,
        llm_model=llm_model,
        redis_url=get_settings().redis_url,
        stop_timeout_s=stop_timeout,
    )
    started = time.monotonic()
    signal.signal(signal.SIGTERM, ml_cli.raise_interrupt)
    try:
        with ml_cli.errors(ServiceError):
            up_module.start_all(cfg, _say)
            up_module.bootstrap(cfg, _say)
        _say(f"ready in {time.monotonic() - started:.0f} s")
        typer.echo(_ready_banner(cfg))
        if not exit_after_setup:
            with ml_cli.errors(ServiceError):
                while True:
                    up_module.check_running(cfg)
                    time.sleep(2)
    except KeyboardInterrupt:
        pass
    finally:
        up_module.stop_all(cfg, _say)  # a second Ctrl-C there cancels the workers' jobs at once


def _say(message: str) -> None:
    typer.echo(f"[nerloop up] {message}", err=True)


def _ready_banner(cfg: up_module.UpConfig) -> str:
    password = (cfg.home / "label-studio-password").read_text()
    ls_url = f"http://127.0.0.1:{cfg.ls_port}"
    return (
        f"Label Studio: {ls_url}  (admin@nerloop.local / {password})\n"
        f"API token:    {up_module.api_token(cfg.home)}  (Label Studio SDK: "
        f"Client(base_url='{ls_url}', api_key=<token>); also `nerloop token --home {cfg.home}`)\n"
        f"backend:      http://127.0.0.1:{cfg.backend_port}  (GET /api/projects)\n"
        f"dashboard:    http://127.0.0.1:{cfg.backend_port}/dashboard\n"
        f"logs:         {cfg.home / 'logs'}\nlabel tasks; {_retrain_policy(cfg.home)}. Ctrl-C stops everything."
    )


def _retrain_policy(home: Path) -> str:
    """When the projects retrain, from their own thresholds (a project keeps the one it was created with)."""
    projects = up_module.retrain_thresholds(home)
    if not projects:
        return "no project yet (`nerloop project create`)"
    if len(projects) == 1:
        return f"every {projects[0][1]} label changes retrain the model"
    return "each project retrains at its own threshold: " + ", ".join(
        f"{name} every {n} label changes" for name, n in projects
    )


@app.command()
def token(home: HomeOpt = Path(".nerloop")) -> None:
    """Print the Label Studio API token of the `nerloop up` deployment in --home.

    The Label Studio SDK's api_key; REST: `Authorization: Token <token>`. With docker-compose.yml it is
    LABEL_STUDIO_TOKEN.
    """
    path = home / "label-studio-token"
    if not path.is_file():
        raise ml_cli.fail(f"{path} does not exist: `nerloop up --home {home}` makes it on its first start")
    typer.echo(path.read_text().strip())


def main() -> None:
    """Entry point of ``nerloop``."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except SettingsError as exc:  # raised by get_settings() inside any command
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
