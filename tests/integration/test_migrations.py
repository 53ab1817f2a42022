"""The Alembic migrations build exactly the schema the models declare, on SQLite and PostgreSQL, both ways."""

from __future__ import annotations

import json

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from backend.db.models import Base
from backend.db.session import alembic_config, make_engine, upgrade

pytestmark = pytest.mark.integration


def test_migrated_schema_matches_the_models(database_url: str) -> None:
    engine = make_engine(database_url)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert diff == []


def test_every_migration_downgrades_and_upgrades_again(database_url: str) -> None:
    command.downgrade(alembic_config(database_url), "0002")
    engine = make_engine(database_url)
    assert "ls_prediction_id" not in {c["name"] for c in inspect(engine).get_columns("prediction")}
    engine.dispose()
    command.downgrade(alembic_config(database_url), "base")
    engine = make_engine(database_url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()
    upgrade(database_url)
    engine = make_engine(database_url)
    assert "ls_prediction_id" in {c["name"] for c in inspect(engine).get_columns("prediction")}
    engine.dispose()


def test_label_state_is_rebuilt_from_the_events_stored_before_it(database_url: str) -> None:
    """0004 replays the stored events: two annotations of one task, one of them deleted, the other kept."""
    from sqlalchemy import text

    from backend.db.models import Annotation, AnnotationEvent, Project
    from tests.conftest import open_db

    command.downgrade(alembic_config(database_url), "0003")
    engine = make_engine(database_url)

    def created(annotation_id: int, action: str = "ANNOTATION_CREATED") -> str:
        result = [{"type": "labels", "value": {"start": 0, "end": 4, "labels": ["person"]}}]
        annotation = {"id": annotation_id, "result": result, "updated_at": "2026-11-20T10:00:00Z", "lead_time": 7}
        return json.dumps(
            {
                "action": action,
                "project": {"id": 3},
                "task": {"id": 8, "data": {"text": "Anna flew ."}},
                "annotation": {**annotation, "completed_by": 5},
            }
        )

    deleted = json.dumps({"action": "ANNOTATIONS_DELETED", "project": {"id": 3}, "annotations": [{"id": 41}]})
    unknown = json.dumps({"action": "ANNOTATIONS_DELETED", "project": {"id": 3}, "annotations": [{"id": 99}]})
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO project (id, ls_project_id, name, guide_yaml, guide_sha256, retrain_threshold, created_at)"
                " VALUES (1, 3, 'p', '', '', 20, CURRENT_TIMESTAMP)"
            )
        )
        for key, action, payload in [
            ("a", "ANNOTATION_CREATED", created(41)),
            ("b", "ANNOTATION_CREATED", created(42)),
            ("c", "ANNOTATIONS_DELETED", deleted),
            ("d", "ANNOTATION_UPDATED", created(41, "ANNOTATION_UPDATED")),  # late: 41 stays deleted
            ("e", "ANNOTATIONS_DELETED", unknown),
        ]:
            connection.execute(
                text(
                    "INSERT INTO annotation_event (project_id, event_key, action, payload, enqueued, received_at)"
                    " VALUES (1, :key, :action, :payload, true, CURRENT_TIMESTAMP)"
                ),
                {"key": key, "action": action, "payload": payload},
            )
    engine.dispose()
    upgrade(database_url)
    with open_db(database_url) as db:
        rows = {
            a.ls_annotation_id: (a.ls_task_id, a.deleted, a.lead_time_s, a.completed_by) for a in db.query(Annotation)
        }
        changes = [e.label_change for e in db.query(AnnotationEvent).order_by(AnnotationEvent.id)]
        watermark = db.query(Project.label_watermark).scalar()
    assert rows == {41: (8, True, 7.0, 5), 42: (8, False, 7.0, 5)}
    assert changes == [True] * 5  # every event counted before 0004 still counts: existing watermarks hold
    assert watermark == 5  # 0008 counts them into the project's watermark
