"""``nerloop project create``: a Label Studio project from a guide, its tasks, the backend, and sampling."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import spacy
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from annotation_guide import Guide, check_label_config, label_studio_config
from backend.adapters.label_studio import LabelStudioGateway
from backend.db.models import AnnotationEvent, Project
from backend.errors import InvalidInputError, UpstreamError
from backend.services.annotations import reconcile
from backend.services.predictions import version_tag
from backend.services.projects import DEFAULT_RETRAIN_THRESHOLD, register_project
from backend.services.routing import routing_table
from ml.converters import detect_format, load_docs, read_tasks
from ml.errors import DataError


@dataclass(frozen=True)
class CreatedProject:
    """What ``project create`` made."""

    project_id: int
    ls_project_id: int
    task_ids: list[int]
    ml_backend_id: int
    model_version: str


def read_texts(path: Path, guide: Guide) -> list[str]:
    """Texts to import: JSONL of ``{"text"}`` / Label Studio tasks, or a CoNLL file (tokens joined by spaces)."""
    if detect_format(path) == "conll":
        return [
            doc.text for doc in load_docs(path, spacy.blank(guide.language), labels=guide.labels, policy="expand").docs
        ]
    texts = []
    for index, task in enumerate(read_tasks(path)):
        text = task.get("data", task).get("text") if isinstance(task, dict) else None
        if not isinstance(text, str):
            raise DataError(f"{path}: task {index} has no 'text' (nor 'data.text')")
        texts.append(text)
    if not texts:
        raise DataError(f"{path}: holds no task")
    return texts


def create_project(
    db: Session,
    gateway: LabelStudioGateway,
    guide: Guide,
    texts: list[str],
    *,
    backend_url: str,
    title: str | None = None,
    retrain_threshold: int = DEFAULT_RETRAIN_THRESHOLD,
    basic_auth: tuple[str, str] | None = None,
) -> CreatedProject:
    """Create and wire a project end to end.

    The ML backend's title is the version tag ``/predict`` reports, because ``ml.create`` sets the project's
    ``model_version`` to the title and Label Studio orders by the scores of that version only.

    Args:
        db: The session (committed here, before Label Studio calls the backend back).
        gateway: Label Studio.
        guide: The project's guide.
        texts: Task texts.
        backend_url: Where Label Studio reaches the backend.
        title: Project title (the guide's project name by default).
        retrain_threshold: Label-change events between retrains (the entrypoint passes the setting).
        basic_auth: Credentials Label Studio must send to the backend, if it requires them.

    Returns:
        The ids of everything created.
    """
    ls_id = gateway.create_project(
        title=title or guide.project, label_config=label_studio_config(guide), description=guide.description
    )
    try:
        project = register_project(db, ls_project_id=ls_id, guide=guide, retrain_threshold=retrain_threshold)
        db.commit()
        task_ids = gateway.import_tasks(ls_id, texts, field=guide.label_studio.text_field)
        tag = version_tag(project, routing_table(db, project))
        ml_id = gateway.connect_backend(ls_id, url=backend_url, title=tag, basic_auth=basic_auth)
        gateway.use_uncertainty_sampling(ls_id)
    except Exception as exc:
        _undo(db, gateway, ls_id, exc)
        raise
    return CreatedProject(project.id, ls_id, task_ids, ml_id, tag)


def _undo(db: Session, gateway: LabelStudioGateway, ls_id: int, cause: Exception) -> None:
    """A creation failed half-way: remove what it made, so that running it again starts clean."""
    db.rollback()
    db.execute(delete(Project).where(Project.ls_project_id == ls_id))
    db.commit()
    try:
        gateway.delete_project(ls_id)
    except UpstreamError as exc:
        cause.add_note(f"Label Studio project {ls_id} is left over and could not be deleted: {exc}")


@dataclass(frozen=True)
class AttachedProject:
    """What ``project attach`` found and wired."""

    project_id: int
    ls_project_id: int
    annotations: int
    imported: int
    label_changes: int
    ml_backend_id: int
    model_version: str
    retrain_threshold: int
    malformed: int = 0


def attach_project(
    db: Session,
    gateway: LabelStudioGateway,
    guide: Guide,
    *,
    ls_project_id: int,
    backend_url: str,
    retrain_threshold: int | None = None,
    default_threshold: int = DEFAULT_RETRAIN_THRESHOLD,
    basic_auth: tuple[str, str] | None = None,
) -> AttachedProject:
    """Take over a Label Studio project a team already has.

    Check its labeling config against the guide, import its annotations into nerloop's label state
    (``annotations.reconcile``), connect the backend (Label Studio adds the webhook) and order the queue by uncertainty.
    Safe to run again: annotations already imported are not counted twice, and an ML backend already connected at
    ``backend_url`` is reused.

    Args:
        db: The session (committed here, before Label Studio calls the backend back).
        gateway: Label Studio.
        guide: The guide the project must match.
        ls_project_id: Label Studio's id of the project.
        backend_url: Where Label Studio reaches the backend.
        retrain_threshold: Label-change events between retrains (None: keep the project's, on a re-attach).
        default_threshold: The threshold of a project attached for the first time without one (the entrypoint
            passes the setting).
        basic_auth: Credentials Label Studio must send to the backend, if it requires them.

    Returns:
        What was imported and connected; the caller enqueues a retrain check (labels may be over the threshold).

    Raises:
        InvalidInputError: the labeling config does not match the guide (every mismatch, one per line).
        UpstreamError: Label Studio refused or is unreachable.
    """
    _, config = gateway.project_config(ls_project_id)
    problems = check_label_config(config, guide)
    if problems:
        raise InvalidInputError(
            f"Label Studio project {ls_project_id} does not match the guide {guide.project!r}:\n  - "
            + "\n  - ".join(problems)
        )
    project = register_project(
        db,
        ls_project_id=ls_project_id,
        guide=guide,
        retrain_threshold=retrain_threshold,
        default_threshold=default_threshold,
    )
    db.commit()  # webhooks of a re-attach may come in while the export is read
    as_of = db.scalar(select(func.max(AnnotationEvent.id)))
    db.commit()  # no connection held while Label Studio exports or is configured
    synced = reconcile(db, project, gateway.export_tasks(ls_project_id), as_of=as_of)
    db.commit()
    tag = version_tag(project, routing_table(db, project))
    db.commit()
    ml_id = gateway.backend_urls(ls_project_id).get(backend_url.rstrip("/"))
    if ml_id is None:
        ml_id = gateway.connect_backend(ls_project_id, url=backend_url, title=tag, basic_auth=basic_auth)
    gateway.use_uncertainty_sampling(ls_project_id)
    return AttachedProject(
        project.id,
        ls_project_id,
        synced.annotations,
        synced.events,
        synced.label_changes,
        ml_id,
        tag,
        project.retrain_threshold,
        synced.malformed,
    )
