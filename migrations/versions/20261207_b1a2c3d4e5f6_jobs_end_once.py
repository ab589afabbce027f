"""a job ends once: one webhook event per job and kind; each model's last progress

A job's change of state is one compare-and-set, so only one process records its
event; the database enforces it too. Events recorded twice by older versions
(two merges of one job) are reduced to the first of each job and kind.

model_activity: when each model's detectors last made progress on a chunk; the
watchdog fails a job only when nothing works on its model's queue.

Revision ID: b1a2c3d4e5f6
Revises: 5d0c8e3a7b19
Create Date: 2026-12-07 03:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

import detector.models.base

# revision identifiers, used by Alembic.
revision = 'b1a2c3d4e5f6'
down_revision = '5d0c8e3a7b19'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'model_activity',
        sa.Column('model', sa.String(length=32), nullable=False),
        sa.Column('progress_at', detector.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column('worker', sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint('model'),
    )
    op.execute(
        sa.text(
            "DELETE FROM webhook_events WHERE id IN ("
            " SELECT e.id FROM webhook_events e WHERE EXISTS ("
            "  SELECT 1 FROM webhook_events f WHERE f.job_id = e.job_id AND f.type = e.type"
            "  AND (f.created_at < e.created_at OR (f.created_at = e.created_at AND f.id < e.id))))"
        )
    )
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.create_unique_constraint('uq_webhook_events_job_id_type', ['job_id', 'type'])


def downgrade() -> None:
    op.drop_table('model_activity')
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.drop_constraint('uq_webhook_events_job_id_type', type_='unique')
