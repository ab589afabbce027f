"""analytics specs and their results over a job's tracks

analytics: one row per (job, spec id), with the spec, its run's status, stage and
progress, and its results and heatmap counts (detector.analytics).

Revision ID: 0a1b2c3d4e5f
Revises: f5e6a7b8c9d0
Create Date: 2026-12-07 06:00:00.000000
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

import detector.models.base

# revision identifiers, used by Alembic.
revision = '0a1b2c3d4e5f'
down_revision = 'f5e6a7b8c9d0'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
STATUS = sa.Enum('queued', 'running', 'succeeded', 'failed', name='analytics_status')
TIME = detector.models.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'analytics',
        sa.Column('job_id', sa.String(length=32), nullable=False),
        sa.Column('id', sa.String(length=16), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('spec', JSON, nullable=False),
        sa.Column('status', STATUS, nullable=False),
        sa.Column('stage', sa.String(length=16), nullable=False),
        sa.Column('frames_done', sa.Integer(), nullable=False),
        sa.Column('frames_total', sa.Integer(), nullable=True),
        sa.Column('deliveries', sa.Integer(), nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('drawn', sa.Boolean(), nullable=False),
        sa.Column('results', JSON, nullable=True),
        sa.Column('heatmap', JSON, nullable=True),
        sa.Column('created_at', TIME, nullable=False),
        sa.Column('started_at', TIME, nullable=True),
        sa.Column('progress_at', TIME, nullable=True),
        sa.Column('finished_at', TIME, nullable=True),
        sa.ForeignKeyConstraint(
            ['job_id'], ['jobs.id'], name=op.f('fk_analytics_job_id_jobs'), ondelete='CASCADE'
        ),
        sa.PrimaryKeyConstraint('job_id', 'id', name=op.f('pk_analytics')),
    )


def downgrade() -> None:
    op.drop_table('analytics')
    if op.get_context().dialect.name == 'postgresql':
        STATUS.drop(op.get_bind(), checkfirst=True)
