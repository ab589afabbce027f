"""a job keeps its model's identity and label set

Jobs get their model's labels, indexed by class id, stored when they are created,
so that a job is read, exported and rendered the same after its model leaves the
catalog (DETECTOR_MODELS). Older jobs keep null: they are read as before.

Revision ID: e4d5f6a7b8c9
Revises: d3c4e5f6a7b8
Create Date: 2026-12-07 03:00:00.000000
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = 'e4d5f6a7b8c9'
down_revision = 'd3c4e5f6a7b8'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('labels', JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('labels')
