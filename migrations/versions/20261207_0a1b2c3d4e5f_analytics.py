"""analytics specs and their results over a job's tracks

Revision ID: 0a1b2c3d4e5f
Revises: f5e6a7b8c9d0
Create Date: 2026-12-07 06:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '0a1b2c3d4e5f'
down_revision = 'f5e6a7b8c9d0'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
