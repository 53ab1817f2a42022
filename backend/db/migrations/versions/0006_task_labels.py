"""materialised labels: each labelled task's text and spans, kept up to date as events arrive

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 23:00:00

The tables start empty and ``project.labels_indexed`` false for existing projects; the backend fills them
from the label state at its next start (``backend.services.label_state.index_labels``: the conversion needs
spaCy, and a migration never imports the app).
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "task_label",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("project_id", sa.Integer(), sa.ForeignKey("project.id", ondelete="CASCADE"), nullable=False),
        sa.Column("ls_task_id", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("spans", sa.JSON(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=True),
        sa.UniqueConstraint("project_id", "ls_task_id", name="uq_task_label_project_ls_task"),
    )
    op.create_table(
        "labeled_span",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("project_id", sa.Integer(), sa.ForeignKey("project.id", ondelete="CASCADE"), nullable=False),
        sa.Column("ls_task_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(100), nullable=False),
    )
    op.create_index("ix_labeled_span_project_label", "labeled_span", ["project_id", "label"])
    op.create_index("ix_labeled_span_project_task", "labeled_span", ["project_id", "ls_task_id"])
    with op.batch_alter_table("project") as batch:
        batch.add_column(sa.Column("labels_indexed", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("annotation_event") as batch:
        batch.create_index("ix_annotation_event_project_label_change", ["project_id", "label_change"])


def downgrade() -> None:
    with op.batch_alter_table("annotation_event") as batch:
        batch.drop_index("ix_annotation_event_project_label_change")
    with op.batch_alter_table("project") as batch:
        batch.drop_column("labels_indexed")
    op.drop_index("ix_labeled_span_project_task", "labeled_span")
    op.drop_index("ix_labeled_span_project_label", "labeled_span")
    op.drop_table("labeled_span")
    op.drop_table("task_label")
