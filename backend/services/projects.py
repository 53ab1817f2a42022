"""Projects: a Label Studio project, its guide, its current model version."""

from __future__ import annotations

from functools import lru_cache

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from annotation_guide import Guide
from backend.db.models import ModelVersion, Project
from backend.errors import NotFoundError
from backend.settings import Settings
from ml.model_meta import ModelMetrics

# The retrain threshold of a project registered without one and outside an entrypoint (which passes the setting):
# the setting's default, its one owner.
DEFAULT_RETRAIN_THRESHOLD: int = Settings.model_fields["retrain_every_n_label_changes"].default


def register_project(
    db: Session,
    *,
    ls_project_id: int,
    guide: Guide,
    retrain_threshold: int | None = None,
    default_threshold: int = DEFAULT_RETRAIN_THRESHOLD,
) -> Project:
    """Create or update the project row for a Label Studio project (idempotent).

    The retrain threshold is the project's own: registering it again (``project attach`` once more) keeps it unless
    a new one is given.

    Args:
        db: The session (the caller commits).
        ls_project_id: Label Studio's project id.
        guide: The project's guide; stored whole, so the backend needs no file.
        retrain_threshold: Label-change events between retrains (None: the project's own, or ``default_threshold``
            for a project registered for the first time).
        default_threshold: The threshold of a new project given none: ``NER_RETRAIN_EVERY_N_LABEL_CHANGES``, which
            the entrypoints pass (its default when not).

    Returns:
        The project row.
    """
    project = db.scalar(select(Project).where(Project.ls_project_id == ls_project_id))
    guide_yaml = yaml.safe_dump(guide.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    if project is None:
        project = Project(
            ls_project_id=ls_project_id,
            name=guide.project,
            guide_yaml=guide_yaml,
            guide_sha256=guide.sha256,
            retrain_threshold=default_threshold if retrain_threshold is None else retrain_threshold,
        )
        db.add(project)
    else:
        project.guide_yaml, project.guide_sha256, project.name = guide_yaml, guide.sha256, guide.project
        if retrain_threshold is not None:
            project.retrain_threshold = retrain_threshold
    db.flush()
    return project


def project_by_ls_id(db: Session, ls_project_id: int) -> Project:
    """The project registered for a Label Studio project id."""
    project = db.scalar(select(Project).where(Project.ls_project_id == ls_project_id))
    if project is None:
        raise NotFoundError(
            f"Label Studio project {ls_project_id} is not registered with nerloop; "
            "create it with `nerloop project create`"
        )
    return project


def project_by_id(db: Session, project_id: int) -> Project:
    """The project with this nerloop id."""
    project = db.get(Project, project_id)
    if project is None:
        raise NotFoundError(f"project {project_id} does not exist")
    return project


def guide_of(project: Project) -> Guide:
    """The project's guide (parsed once per distinct content: every /predict needs it)."""
    return _parse_guide(project.guide_yaml)


@lru_cache(maxsize=64)
def _parse_guide(text: str) -> Guide:
    return Guide.model_validate(yaml.safe_load(text))


def current_model(db: Session, project: Project) -> ModelVersion | None:
    """The version the project serves, if any."""
    if project.current_version is None:
        return None
    return db.scalar(
        select(ModelVersion).where(
            ModelVersion.project_id == project.id, ModelVersion.version == project.current_version
        )
    )


def metrics_of(row: ModelVersion) -> ModelMetrics | None:
    """A version's stored metrics, validated (None: none were recorded).

    Raises:
        ModelError: The stored metrics are malformed (the message names the version and the field).
    """
    if not row.metrics:
        return None
    return ModelMetrics.from_dict(row.metrics, source=f"model version {row.version}")


def record_model_version(
    db: Session,
    project: Project,
    *,
    version: str,
    path: str,
    architecture: str,
    metrics: ModelMetrics | None,
    promote: bool,
) -> ModelVersion:
    """Add a trained version (idempotent on the version name) and optionally make it the serving one.

    ``metrics``: its evaluation (read back with ``metrics_of``); None records none (stored as ``{}``).
    """
    row = db.scalar(select(ModelVersion).where(ModelVersion.project_id == project.id, ModelVersion.version == version))
    if row is None:
        stored = metrics.to_dict() if metrics is not None else {}
        row = ModelVersion(project_id=project.id, version=version, path=path, architecture=architecture, metrics=stored)
        db.add(row)
    if promote:
        demote_serving(db, project)
        row.status = "promoted"
        project.current_version = version
    db.flush()
    return row


def demote_serving(db: Session, project: Project) -> None:
    """The version that serves now stops being the promoted one (it stays kept, as ``retired``)."""
    serving = current_model(db, project)
    if serving is not None:
        serving.status = "retired"
