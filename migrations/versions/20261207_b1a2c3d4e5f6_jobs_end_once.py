"""a job ends once: one webhook event per job and kind

Revision ID: b1a2c3d4e5f6
Revises: 5d0c8e3a7b19
Create Date: 2026-12-07 03:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = 'b1a2c3d4e5f6'
down_revision = '5d0c8e3a7b19'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
