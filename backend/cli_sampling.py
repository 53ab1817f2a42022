"""``nerloop project strategy``: show or change a project's sampling strategy (registered in ``backend.cli``)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from backend.errors import ServiceError
from backend.settings import get_settings
from ml import cli as ml_cli


def _switch(value: str | None, name: str) -> bool | None:
    if value is None:
        return None
    if value not in ("on", "off"):
        raise ml_cli.fail(f"{name}: give on or off, not {value!r}")
    return value == "on"


def _changes(
    measure: str | None,
    diversity: str | None,
    diversity_weight: str | None,
    representation: str | None,
    type_weights: str | None,
    weight: list[str] | None,
    clear_weights: bool,
) -> dict[str, Any]:
    changes: dict[str, Any] = {"measure": measure, "representation": representation}
    changes["diversity"] = _switch(diversity, "--diversity")
    changes["type_weights"] = _switch(type_weights, "--type-weights")
    changes = {k: v for k, v in changes.items() if v is not None}
    if diversity_weight is not None:
        try:
            changes["diversity_weight"] = None if diversity_weight == "auto" else float(diversity_weight)
        except ValueError:
            raise ml_cli.fail(
                f"--diversity-weight: give auto or a number in [0, 1], not {diversity_weight!r}"
            ) from None
    if weight or clear_weights:
        weights: dict[str, float] = {}
        for item in weight or []:
            label, sep, value = item.partition("=")
            try:
                weights[label] = float(value)
            except ValueError:
                raise ml_cli.fail(f"--weight: give TYPE=NUMBER, not {item!r}") from None
            if not sep or not label:
                raise ml_cli.fail(f"--weight: give TYPE=NUMBER, not {item!r}")
        changes["weights"] = weights
    return changes


def project_strategy(
    project: Annotated[int, typer.Argument(help="nerloop project id (`nerloop project list`).")],
    set_measure: Annotated[
        str | None, typer.Option("--set", help="Uncertainty measure: least_confidence, margin or entropy.")
    ] = None,
    diversity: Annotated[str | None, typer.Option(help="on: modAL's ranked batch over doc vectors; off.")] = None,
    diversity_weight: Annotated[
        str | None, typer.Option(help="auto (modAL's |U|/(|U|+|D|)) or a fixed alpha in [0, 1].")
    ] = None,
    representation: Annotated[
        str | None, typer.Option(help="Doc vectors: model (its own tok2vec / encoder) or minilm.")
    ] = None,
    type_weights: Annotated[str | None, typer.Option(help="on/off: weight types below the F1 target.")] = None,
    weight: Annotated[list[str] | None, typer.Option(help="TYPE=W, a hand-set weight (repeat; replaces).")] = None,
    clear_weights: Annotated[bool, typer.Option(help="Remove the hand-set weights.")] = False,
) -> None:
    """Show a project's sampling strategy, or change it (the next rescoring uses it); lists the last rescorings."""
    from backend.cli import database_errors
    from backend.db.session import make_engine, session_factory, session_scope
    from backend.services import sampling
    from backend.services.projects import project_by_id

    changes = _changes(set_measure, diversity, diversity_weight, representation, type_weights, weight, clear_weights)
    url = get_settings().database_url
    engine = make_engine(url)
    try:
        with ml_cli.errors(ServiceError), database_errors(url), session_scope(session_factory(engine)) as db:
            row = project_by_id(db, project)
            strategy = sampling.change_strategy(db, row, changes) if changes else sampling.strategy_of(row)
            typer.echo(f"project {project}: {strategy.describe()}")
            for done in sampling.rescorings(db, row, limit=5):
                typer.echo(
                    f"  {done['created_at'][:19]}  {done['model_version']}  {done['described']}  "
                    f"{done['representation']} vectors, pool {done['pool']}, batch {len(done['batch'])}"
                )
    finally:
        engine.dispose()
