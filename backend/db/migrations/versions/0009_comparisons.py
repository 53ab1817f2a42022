"""comparison results of a project (issue 13)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 05:30:00

``comparison`` holds each prompting-vs-fine-tuning comparison of a project: one per label watermark, its progress
while the ``train`` queue runs it, and the report's data (rows with intervals, costs, break-even) once it ends.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "comparison",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("project_id", sa.Integer(), sa.ForeignKey("project.id", ondelete="CASCADE"), nullable=False),
        sa.Column("label_watermark", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("stage", sa.String(120), nullable=False),
        sa.Column("progress", sa.Double(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False, server_default="0"),
        sa.UniqueConstraint("project_id", "label_watermark", name="uq_comparison_watermark"),
    )
    op.create_index("ix_comparison_project_id", "comparison", ["project_id"])


def downgrade() -> None:
    op.drop_index("ix_comparison_project_id", "comparison")
    op.drop_table("comparison")
