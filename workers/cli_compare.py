"""``nerloop project compare --project P``.

A project's prompting-vs-fine-tuning comparison on its own labels, run by the ``train`` queue's worker
(``workers.compare_project``), followed until it ends (registered in ``workers.cli``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from backend.errors import ServiceError
from backend.settings import get_settings
from ml import cli as ml_cli

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker


def project_compare(
    project: Annotated[int, typer.Option(help="nerloop project id.")],
    wait: Annotated[bool, typer.Option(help="Follow its progress until it ends, then print the rows.")] = True,
    shots: Annotated[str, typer.Option(help="Demonstrations per LLM prompt; 0 is zero-shot; none: no LLM.")] = "0,5",
    strategies: Annotated[str, typer.Option(help="Demonstrations of the k-shot rows: random, similar.")] = (
        "random,similar"
    ),
    sizes: Annotated[str, typer.Option(help="Training tasks of each fine-tuned point; all: every one.")] = (
        "50,100,200,500,all"
    ),
    architectures: Annotated[
        str | None, typer.Option(help="cnn and/or transformer (NER_RETRAIN_ARCHITECTURE).")
    ] = None,
    limit_llm: Annotated[
        int, typer.Option(min=0, help="LLM rows on a seeded random sample of N test tasks (0: all).")
    ] = 200,
    max_steps: Annotated[int | None, typer.Option(min=1, help="CNN steps per size (NER_RETRAIN_MAX_STEPS).")] = None,
) -> None:
    """Compare prompting the project's LLM with fine-tuning on the project's labels.

    Its labelled training tasks train, its held-out test tasks score every row. The worker on the train queue runs it;
    the dashboard shows the latest result. Asking again at the same labels and options is a no-op; other options while
    one of these labels is queued or running are refused (the message names that one's options).
    """
    from pydantic import ValidationError

    from backend.adapters.jobs import CeleryJobQueue
    from backend.db.session import make_engine, session_factory, session_scope
    from backend.services import comparison
    from backend.services.projects import project_by_id

    settings = get_settings()
    try:
        options = comparison.ComparisonOptions(
            shots=() if shots == "none" else tuple(k for k in ml_cli._numbers("--shots", shots) if k is not None),
            strategies=tuple(s.strip() for s in strategies.split(",") if s.strip()),
            sizes=tuple(ml_cli._numbers("--sizes", sizes, all_word=True)),
            architectures=None if architectures is None else tuple(a.strip() for a in architectures.split(",")),
            limit_llm=limit_llm,
            max_steps=max_steps,
        )
    except ValidationError as exc:
        problem = exc.errors()[0]
        raise ml_cli.fail(f"--{problem['loc'][0]}: {problem['msg']}") from None
    engine = make_engine(settings.database_url)
    sessions = session_factory(engine)
    try:
        with ml_cli.errors(ServiceError), session_scope(sessions) as db:  # a broker failure: one line, exit 2
            row, created = comparison.request_comparison(
                db,
                project_by_id(db, project),
                options=options,
                settings=settings,
                jobs=CeleryJobQueue(settings.redis_url),
            )
            comparison_id, status = row.id, row.status
        state = "queued" if created else f"already exists for these labels and options ({status})"
        typer.echo(f"comparison {comparison_id} {state}")
        if wait:
            _follow(sessions, comparison_id)
    finally:
        engine.dispose()


def _follow(sessions: sessionmaker[Session], comparison_id: int) -> None:
    from backend.db.session import session_scope
    from backend.services import comparison

    last = ""
    while True:
        with session_scope(sessions) as db:
            row = comparison.comparison_by_id(db, comparison_id)
            line = f"comparison {row.id}: {row.status} [{row.stage}] {row.progress:6.1%}"
            done, error, result = row.status in comparison.FINAL, row.error, row.result
        if line != last:
            typer.echo(line, err=True)
            last = line
        if done:
            if result is None:
                typer.echo(f"{line} {error or ''}")
                raise typer.Exit(1)
            _print(result)
            raise typer.Exit(0)
        time.sleep(2)


def _print(result: dict[str, Any]) -> None:
    """The rows of a finished comparison.

    A figure stored as null (NaN or infinite, e.g. F1 with nothing to score) prints as n/a.
    """
    for row in result["rows"]:
        interval = row["micro_f1_interval"]
        band = "" if interval is None else f" [{_num(interval[0])}, {_num(interval[1])}]"
        typer.echo(
            f"{row['name']:<40} exact micro F1 {_num(row['micro_f1'])}{band}  "
            f"${_num(row['cost_per_1k_docs'], '.4f')}/1k docs"
        )
    for entry in result["break_even"]:
        volume = "none" if entry["volume"] is None else f"{entry['volume']:,.0f} docs"
        typer.echo(f"break-even {entry['row']} vs {entry['llm_row']}: {volume}")
    pace = _num(result["costs"]["seconds_per_label"], ".1f")
    typer.echo(f"seconds per label: {pace} ({result['seconds_per_label_source']})")
    typer.echo(f"report: {result['report_dir']}/report.md, report.html")


def _num(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)
