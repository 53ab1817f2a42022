"""comparison results of a project (issue 13)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 05:30:00

Reserved in the chain so that three changes can land in any order; the schema change is filled in by its issue.
"""

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
