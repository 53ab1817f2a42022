"""deleted tasks: a task Label Studio deleted stays deleted, whatever event about it arrives later

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 21:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deleted_task",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("project_id", sa.Integer(), sa.ForeignKey("project.id", ondelete="CASCADE"), nullable=False),
        sa.Column("ls_task_id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=True),
        sa.UniqueConstraint("project_id", "ls_task_id", name="uq_deleted_task_project_ls_task"),
    )
    op.create_index("ix_deleted_task_project_id", "deleted_task", ["project_id"])


def downgrade() -> None:
    op.drop_index("ix_deleted_task_project_id", "deleted_task")
    op.drop_table("deleted_task")
