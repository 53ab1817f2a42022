"""sampling strategy per project and per rescoring (issue 14)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 05:30:00

``project.sampling`` holds the project's sampling strategy (``ml.sampling_strategy.SamplingStrategy`` as JSON; NULL:
the defaults). ``rescoring`` records each rescoring of the pool: the serving version, the strategy it ran with, the
doc vectors the diversity term used, the pool size and the chosen batch.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("project") as batch:
        batch.add_column(sa.Column("sampling", sa.JSON(), nullable=True))
    op.create_table(
        "rescoring",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("project_id", sa.Integer(), sa.ForeignKey("project.id", ondelete="CASCADE"), nullable=False),
        sa.Column("model_version", sa.String(120), nullable=False),
        sa.Column("strategy", sa.JSON(), nullable=False),
        sa.Column("representation", sa.String(40), nullable=False),
        sa.Column("pool", sa.Integer(), nullable=False),
        sa.Column("batch", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_rescoring_project_id", "rescoring", ["project_id"])


def downgrade() -> None:
    op.drop_index("ix_rescoring_project_id", "rescoring")
    op.drop_table("rescoring")
    with op.batch_alter_table("project") as batch:
        batch.drop_column("sampling")
