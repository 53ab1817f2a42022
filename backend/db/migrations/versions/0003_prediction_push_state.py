"""prediction push state: Label Studio's prediction id and whether the LLM pass is done

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 18:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("prediction") as batch:
        batch.add_column(sa.Column("complete", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch.add_column(sa.Column("ls_prediction_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("prediction") as batch:
        batch.drop_column("ls_prediction_id")
        batch.drop_column("complete")
