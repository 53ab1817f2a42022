"""sampling strategy per project and per rescoring (issue 14)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 05:30:00

Reserved in the chain so that three changes can land in any order; the schema change is filled in by its issue.
"""

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
