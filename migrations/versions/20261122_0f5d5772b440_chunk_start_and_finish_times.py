"""chunk start and finish times

Revision ID: 0f5d5772b440
Revises: 54dbc41f0b8c
Create Date: 2026-11-22 18:29:43.697065
"""
from alembic import op
import sqlalchemy as sa


import detector.models.base

# revision identifiers, used by Alembic.
revision = '0f5d5772b440'
down_revision = '54dbc41f0b8c'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('chunks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('started_at', detector.models.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('finished_at', detector.models.base.UTCDateTime(timezone=True), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('chunks', schema=None) as batch_op:
        batch_op.drop_column('finished_at')
        batch_op.drop_column('started_at')

