"""agreement and likely-mislabelled spans (issue 15)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 05:30:00

Reserved in the chain so that three changes can land in any order; the schema change is filled in by its issue.
"""

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
