"""The routing table of a project: computed from the serving model's evaluation, overridable."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from backend.db.models import Project, RoutingOverride, utcnow
from backend.db.upsert import upsert
from backend.errors import InvalidInputError
from backend.services.projects import current_model, guide_of, metrics_of
from ml.routing import ROUTES, Route, RouteEntry, compute_routes


def routing_table(db: Session, project: Project) -> dict[str, RouteEntry]:
    """Each entity type's route; everything goes to the LLM until a model exists."""
    guide = guide_of(project)
    model = current_model(db, project)
    per_type = None
    if model is not None:  # a type without support is not measured (no F1, never 0): ml.model_meta's rule
        metrics = metrics_of(model)
        per_type = metrics.measured_f1() if metrics is not None else {}
    overrides: dict[str, Route] = {
        row.label: row.route  # type: ignore[misc]
        for row in db.scalars(select(RoutingOverride).where(RoutingOverride.project_id == project.id))
    }
    return compute_routes(guide.labels, per_type_f1=per_type, target_f1=guide.targets.f1, overrides=overrides)


def set_override(db: Session, project: Project, *, label: str, route: str) -> None:
    """Route ``label`` to ``model`` or ``llm`` by hand, or back to ``auto``."""
    guide = guide_of(project)
    if label not in guide.labels:
        raise InvalidInputError(f"label {label!r} is not in the guide; labels are {', '.join(guide.labels)}")
    if route not in (*ROUTES, "auto"):
        raise InvalidInputError(f"route must be one of model, llm, auto (not {route!r})")
    if route == "auto":
        db.execute(
            delete(RoutingOverride).where(RoutingOverride.project_id == project.id, RoutingOverride.label == label)
        )
    else:  # an upsert: concurrent PUTs for one label never collide
        db.execute(
            upsert(db, RoutingOverride)
            .values(project_id=project.id, label=label, route=route, updated_at=utcnow())
            .on_conflict_do_update(
                index_elements=["project_id", "label"], set_={"route": route, "updated_at": utcnow()}
            )
        )
    db.flush()


def change_route(db: Session, project: Project, *, label: str, route: str) -> None:
    """Route ``label`` by hand, or back to ``auto`` (:func:`set_override`), and commit.

    Raises:
        InvalidInputError: the label is not in the guide, or the route is not ``model``, ``llm`` or ``auto``.
    """
    set_override(db, project, label=label, route=route)
    db.commit()
