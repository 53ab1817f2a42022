"""review passes: likely-mislabelled spans per promoted version, and the review predictions pushed (issue 15)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 05:30:00

Three new tables (``backend.services.review``); nothing existing changes. A pass is claimed per attempt and beats
a heartbeat (the sweep fails a silent one); a pass's ranks are unique.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_pass",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("project_id", sa.Integer(), sa.ForeignKey("project.id", ondelete="CASCADE"), nullable=False),
        sa.Column(
            "model_version_id", sa.Integer(), sa.ForeignKey("model_version.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("model_version", sa.String(100), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("docs", sa.Integer(), nullable=False),
        sa.Column("suspects", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pushed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempt", sa.Integer(), server_default="0", nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("project_id", "model_version_id", name="uq_review_pass_project_version"),
    )
    op.create_index("ix_review_pass_project_id", "review_pass", ["project_id"])
    op.create_table(
        "review_suspect",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("pass_id", sa.Integer(), sa.ForeignKey("review_pass.id", ondelete="CASCADE"), nullable=False),
        sa.Column("project_id", sa.Integer(), sa.ForeignKey("project.id", ondelete="CASCADE"), nullable=False),
        sa.Column("ls_task_id", sa.Integer(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("confidence", sa.Double(), nullable=False),
        sa.Column("start", sa.Integer(), nullable=True),
        sa.Column("end", sa.Integer(), nullable=True),
        sa.Column("label", sa.String(100), nullable=True),
        sa.Column("predicted_start", sa.Integer(), nullable=True),
        sa.Column("predicted_end", sa.Integer(), nullable=True),
        sa.Column("predicted_label", sa.String(100), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("fold", sa.Integer(), nullable=False),
        sa.UniqueConstraint("pass_id", "rank", name="uq_review_suspect_pass_rank"),
    )
    op.create_index("ix_review_suspect_pass_id", "review_suspect", ["pass_id"])
    op.create_index("ix_review_suspect_project_task", "review_suspect", ["project_id", "ls_task_id"])
    op.create_table(
        "review_prediction",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("project_id", sa.Integer(), sa.ForeignKey("project.id", ondelete="CASCADE"), nullable=False),
        sa.Column("ls_task_id", sa.Integer(), nullable=False),
        sa.Column("ls_prediction_id", sa.Integer(), nullable=True),
        sa.Column("pass_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("project_id", "ls_task_id", name="uq_review_prediction_project_task"),
    )


def downgrade() -> None:
    op.drop_table("review_prediction")
    op.drop_index("ix_review_suspect_project_task", "review_suspect")
    op.drop_index("ix_review_suspect_pass_id", "review_suspect")
    op.drop_table("review_suspect")
    op.drop_index("ix_review_pass_project_id", "review_pass")
    op.drop_table("review_pass")
