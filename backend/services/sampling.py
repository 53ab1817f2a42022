"""A project's sampling strategy (read, changed by the API and the CLI) and the record of its rescorings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.db.models import Project, Rescoring
from backend.errors import InvalidInputError
from backend.services.projects import guide_of
from ml.sampling_strategy import SamplingStrategy


def strategy_of(project: Project) -> SamplingStrategy:
    """The project's strategy (the defaults until one is set)."""
    return SamplingStrategy.model_validate(project.sampling or {})


def set_strategy(db: Session, project: Project, changes: Mapping[str, Any]) -> SamplingStrategy:
    """Change some fields of the project's strategy; the others keep their values. Flushes, does not commit.

    Args:
        db: The session (flushed; :func:`change_strategy` commits).
        project: The project.
        changes: Field name -> new value (``measure``, ``diversity``, ``diversity_weight``, ``representation``,
            ``type_weights``, ``weights``); ``weights`` replaces the hand-set weights as a whole.

    Returns:
        The new strategy.

    Raises:
        InvalidInputError: An unknown field, a bad value, or a weight for a type the guide does not have.
    """
    merged = strategy_of(project).model_dump() | dict(changes)
    try:
        strategy = SamplingStrategy.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "strategy"
        raise InvalidInputError(f"sampling strategy: {where}: {first['msg']}") from None
    unknown = sorted(set(strategy.weights) - set(guide_of(project).labels))
    if unknown:
        known = ", ".join(guide_of(project).labels)
        raise InvalidInputError(f"sampling strategy: weights for unknown types {unknown}; the guide has {known}")
    bad = {k: v for k, v in strategy.weights.items() if not v > 0}
    if bad:
        raise InvalidInputError(f"sampling strategy: weights must be positive, got {bad}")
    project.sampling = strategy.model_dump()
    db.flush()
    return strategy


def change_strategy(db: Session, project: Project, changes: Mapping[str, Any]) -> SamplingStrategy:
    """Change some fields of the project's strategy (:func:`set_strategy`) and commit; the next rescoring uses it.

    Args:
        db: The session; committed here.
        project: The project.
        changes: Field name -> new value; only ``diversity_weight`` may be None (modAL's trade-off).

    Returns:
        The new strategy.

    Raises:
        InvalidInputError: A field other than ``diversity_weight`` set to None, an unknown field, a bad value, or a
            weight for a type the guide does not have.
    """
    null = sorted(k for k, v in changes.items() if v is None and k != "diversity_weight")
    if null:
        raise InvalidInputError(f"sampling strategy: {', '.join(null)} cannot be null; leave it out to keep it")
    strategy = set_strategy(db, project, changes)
    db.commit()
    return strategy


def record_rescoring(
    db: Session,
    project: Project,
    *,
    model_version: str,
    strategy: SamplingStrategy,
    representation: str,
    pool: int,
    batch: list[int],
) -> Rescoring:
    """Store what a rescoring chose and how (flushes; the rescoring commits with its predictions)."""
    row = Rescoring(
        project_id=project.id,
        model_version=model_version,
        strategy=strategy.model_dump(),
        representation=representation,
        pool=pool,
        batch=batch,
    )
    db.add(row)
    db.flush()
    return row


def rescorings(db: Session, project: Project, *, limit: int = 20) -> list[dict[str, Any]]:
    """The project's latest rescorings, newest first: version, strategy, vectors, pool size, batch, time."""
    rows = db.scalars(
        select(Rescoring).where(Rescoring.project_id == project.id).order_by(Rescoring.id.desc()).limit(limit)
    )
    return [
        {
            "id": r.id,
            "model_version": r.model_version,
            "strategy": r.strategy,
            "described": SamplingStrategy.model_validate(r.strategy).describe(),
            "representation": r.representation,
            "pool": r.pool,
            "batch": r.batch,
            "created_at": r.created_at.isoformat(),
        }
        for r in rows
    ]
