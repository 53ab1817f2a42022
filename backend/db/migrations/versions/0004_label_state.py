"""label state: each Label Studio annotation as it stands now, and which events changed the labels

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 20:00:00

Existing events are replayed into the new table, oldest first, with the rules of
``backend.services.label_state`` at the time of writing (a migration never imports the app).
"""

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "annotation",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("project_id", sa.Integer(), sa.ForeignKey("project.id", ondelete="CASCADE"), nullable=False),
        sa.Column("ls_annotation_id", sa.Integer(), nullable=False),
        sa.Column("ls_task_id", sa.Integer(), nullable=True),
        sa.Column("task_data", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("was_cancelled", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("deleted", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("ls_updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lead_time_s", sa.Double(), nullable=True),
        sa.Column("completed_by", sa.Integer(), nullable=True),
        sa.Column("event_id", sa.Integer(), nullable=True),
        sa.UniqueConstraint("project_id", "ls_annotation_id", name="uq_annotation_project_ls_annotation"),
    )
    op.create_index("ix_annotation_project_id", "annotation", ["project_id"])
    op.create_index("ix_annotation_ls_task_id", "annotation", ["ls_task_id"])
    with op.batch_alter_table("annotation_event") as batch:
        batch.add_column(sa.Column("label_change", sa.Boolean(), nullable=False, server_default=sa.false()))
    _replay()


def _replay() -> None:
    """Rebuild the label state from the stored events (before 0004 every annotation event was a change)."""
    bind = op.get_bind()
    events = sa.table(
        "annotation_event",
        sa.column("id", sa.Integer()),
        sa.column("project_id", sa.Integer()),
        sa.column("action", sa.String()),
        sa.column("payload", sa.JSON()),
        sa.column("label_change", sa.Boolean()),
    )
    state: dict[tuple[int, int], dict[str, Any]] = {}
    query = sa.select(events.c.id, events.c.project_id, events.c.action, events.c.payload).order_by(events.c.id)
    changed: list[int] = []
    for event_id, project_id, action, payload in bind.execute(query):
        if action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED"):
            changed.append(event_id)  # each counted before 0004: the watermarks of existing runs stay valid
        if action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED"):
            _save(state, project_id, event_id, payload)
        elif action == "ANNOTATIONS_DELETED":
            for item in payload.get("annotations") or []:
                key = (project_id, item.get("id") if isinstance(item, dict) else None)
                if key in state:
                    state[key]["deleted"] = True
    annotation_table = sa.table("annotation", *(sa.column(name, kind) for name, kind in _COLUMNS))
    if state:
        op.bulk_insert(annotation_table, list(state.values()))
    for start in range(0, len(changed), 500):
        bind.execute(events.update().where(events.c.id.in_(changed[start : start + 500])).values(label_change=True))


_COLUMNS: tuple[tuple[str, Any], ...] = (
    ("project_id", sa.Integer()),
    ("ls_annotation_id", sa.Integer()),
    ("ls_task_id", sa.Integer()),
    ("task_data", sa.JSON()),
    ("result", sa.JSON()),
    ("was_cancelled", sa.Boolean()),
    ("deleted", sa.Boolean()),
    ("ls_updated_at", sa.DateTime(timezone=True)),
    ("lead_time_s", sa.Double()),
    ("completed_by", sa.Integer()),
    ("event_id", sa.Integer()),
)


def _save(state: dict[tuple[int, int], dict[str, Any]], project_id: int, event_id: int, payload: Any) -> None:
    annotation, task = payload.get("annotation") or {}, payload.get("task") or {}
    if not isinstance(annotation.get("id"), int) or not isinstance(annotation.get("result"), list):
        return
    key = (project_id, annotation["id"])
    if state.get(key, {}).get("deleted"):
        return  # a deleted annotation stays deleted, as at run time
    lead_time, by = annotation.get("lead_time"), annotation.get("completed_by")
    state[key] = {
        "project_id": project_id,
        "ls_annotation_id": annotation["id"],
        "ls_task_id": task.get("id") if isinstance(task.get("id"), int) else None,
        "task_data": task.get("data") if isinstance(task.get("data"), dict) else {},
        "result": annotation["result"],
        "was_cancelled": bool(annotation.get("was_cancelled")),
        "deleted": False,
        "ls_updated_at": _when(annotation.get("updated_at")),
        "lead_time_s": float(lead_time) if isinstance(lead_time, int | float) else None,
        "completed_by": by if isinstance(by, int) else None,
        "event_id": event_id,
    }


def _when(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def downgrade() -> None:
    with op.batch_alter_table("annotation_event") as batch:
        batch.drop_column("label_change")
    op.drop_index("ix_annotation_ls_task_id", "annotation")
    op.drop_index("ix_annotation_project_id", "annotation")
    op.drop_table("annotation")
