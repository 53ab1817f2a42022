"""``nerloop agreement`` and ``nerloop review``: the quality figures of a project (issue #15).

Registered on the ``nerloop`` app by ``backend.cli``; the database layer and spaCy are imported inside the commands.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from backend.errors import ServiceError
from backend.settings import get_settings
from ml import cli as ml_cli


def _summary(project: int, what: str, *, limit: int = 20) -> dict[str, Any]:
    from backend.cli import database_errors
    from backend.db.session import make_engine, session_factory, session_scope
    from backend.services.projects import project_by_id

    url = get_settings().database_url
    engine = make_engine(url)
    try:
        with ml_cli.errors(ServiceError), database_errors(url), session_scope(session_factory(engine)) as db:
            row = project_by_id(db, project)
            if what == "agreement":
                from backend.services.agreement import agreement_summary

                return agreement_summary(db, row)
            from backend.services.review import review_summary

            return review_summary(db, row, limit=limit)
    finally:
        engine.dispose()


def register(app: typer.Typer) -> None:
    """Add the quality commands to the ``nerloop`` app."""

    @app.command()
    def agreement(
        project: Annotated[int, typer.Option(help="nerloop project id.")],
        as_json: Annotated[bool, typer.Option("--json", help="Print the JSON the API returns.")] = False,
    ) -> None:
        """Agreement between annotators per type, beside the serving model's F1.

        Pairwise exact and partial span F1 with 95% intervals, per pair and overall, on the tasks several annotators
        labelled: the ceiling a type's target must respect.
        """
        from backend.services.agreement import format_agreement

        summary = _summary(project, "agreement")
        typer.echo(json.dumps(summary, indent=2) if as_json else format_agreement(summary))

    @app.command()
    def review(
        project: Annotated[int, typer.Option(help="nerloop project id.")],
        limit: Annotated[int, typer.Option(min=0, help="How many suspects to list, most confident first.")] = 20,
        as_json: Annotated[bool, typer.Option("--json", help="Print the JSON the API returns.")] = False,
    ) -> None:
        """The likely-mislabelled spans of the latest review pass (a cross-validated check after each promoted version).

        Counts per type and kind, then the most confident suspects; in Label Studio, the 'nerloop review' tab shows
        their tasks.
        """
        from backend.services.review import format_review

        summary = _summary(project, "review", limit=limit)
        typer.echo(json.dumps(summary, indent=2) if as_json else format_review(summary))
