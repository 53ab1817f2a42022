"""run liveness: heartbeat, the training process, the run's output directory and the sweep's re-sends

Revision ID: 0007
Revises: 0006 (0006 is the materialised labels; renumbered by the lead to keep one head)
Create Date: 2026-11-29 23:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

COLUMNS = ("heartbeat_at", "host", "pid", "attempt", "output_dir", "sent_at", "resends")


def upgrade() -> None:
    with op.batch_alter_table("training_run") as table:
        table.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
        table.add_column(sa.Column("host", sa.String(255), nullable=True))
        table.add_column(sa.Column("pid", sa.Integer(), nullable=True))
        table.add_column(sa.Column("attempt", sa.Integer(), nullable=False, server_default="0"))
        table.add_column(sa.Column("output_dir", sa.Text(), nullable=True))
        table.add_column(sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True))
        table.add_column(sa.Column("resends", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("training_run") as table:
        for name in reversed(COLUMNS):
            table.drop_column(name)
