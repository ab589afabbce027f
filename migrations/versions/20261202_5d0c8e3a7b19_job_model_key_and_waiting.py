"""models chosen per job, and why a queued job waits

Jobs get the name of the model they chose in the deployment's catalog
(DETECTOR_MODELS; null for older jobs, which ran the default) and the reason a
queued job is held back: its owner's processing limit, or no worker online for
its model.

Revision ID: 5d0c8e3a7b19
Revises: 1be83b19ea3e
Create Date: 2026-12-02 19:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '5d0c8e3a7b19'
down_revision = '1be83b19ea3e'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('model_key', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('waiting_for', sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('waiting_for')
        batch_op.drop_column('model_key')
