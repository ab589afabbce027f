"""renders and downloads in their own tables

A job's annotated video and its URL download move from columns of jobs
(render_*, bytes_downloaded, bytes_total, download_*) to one row each in
job_renders and job_downloads, with their values; downgrade moves them back.

Revision ID: f5e6a7b8c9d0
Revises: e4d5f6a7b8c9
Create Date: 2026-12-07 06:00:00.000000
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

import detector.models.base

# revision identifiers, used by Alembic.
revision = 'f5e6a7b8c9d0'
down_revision = 'e4d5f6a7b8c9'
branch_labels = None
depends_on = None

RENDER_VALUES = ('queued', 'rendering', 'succeeded', 'failed')
# The type exists already on PostgreSQL (jobs.render_status uses it): never created here.
RENDER_STATUS = sa.Enum(*RENDER_VALUES, name='render_status').with_variant(
    postgresql.ENUM(*RENDER_VALUES, name='render_status', create_type=False), 'postgresql'
)
TIME = detector.models.base.UTCDateTime(timezone=True)

# (new column, old column of jobs)
RENDER_COLUMNS = (
    ('status', 'render_status'),
    ('key', 'render_key'),
    ('bytes', 'render_bytes'),
    ('frames_done', 'render_frames_done'),
    ('error', 'render_error'),
    ('requested_at', 'render_requested_at'),
    ('progress_at', 'render_progress_at'),
    ('deliveries', 'render_deliveries'),
)
DOWNLOAD_COLUMNS = (
    ('bytes_received', 'bytes_downloaded'),
    ('bytes_total', 'bytes_total'),
    ('deliveries', 'download_deliveries'),
    ('progress_at', 'download_progress_at'),
)


def upgrade() -> None:
    op.create_table(
        'job_renders',
        sa.Column('job_id', sa.String(length=32), nullable=False),
        sa.Column('status', RENDER_STATUS, nullable=False),
        sa.Column('key', sa.String(length=255), nullable=True),
        sa.Column('bytes', sa.BigInteger(), nullable=True),
        sa.Column('frames_done', sa.Integer(), nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('requested_at', TIME, nullable=False),
        sa.Column('progress_at', TIME, nullable=False),
        sa.Column('deliveries', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ['job_id'], ['jobs.id'], name=op.f('fk_job_renders_job_id_jobs'), ondelete='CASCADE'
        ),
        sa.PrimaryKeyConstraint('job_id', name=op.f('pk_job_renders')),
    )
    with op.batch_alter_table('job_renders', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_job_renders_status'), ['status'], unique=False)
    op.create_table(
        'job_downloads',
        sa.Column('job_id', sa.String(length=32), nullable=False),
        sa.Column('bytes_received', sa.BigInteger(), nullable=False),
        sa.Column('bytes_total', sa.BigInteger(), nullable=True),
        sa.Column('deliveries', sa.Integer(), nullable=False),
        sa.Column('progress_at', TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ['job_id'], ['jobs.id'], name=op.f('fk_job_downloads_job_id_jobs'), ondelete='CASCADE'
        ),
        sa.PrimaryKeyConstraint('job_id', name=op.f('pk_job_downloads')),
    )

    # A job has a render row once a render was asked for, a download row when it
    # comes from a URL. Times the old rows lack are the nearest ones they have.
    op.execute(
        'INSERT INTO job_renders (job_id, status, key, bytes, frames_done, error, requested_at,'
        ' progress_at, deliveries)'
        ' SELECT id, render_status, render_key, render_bytes, COALESCE(render_frames_done, 0),'
        ' render_error, COALESCE(render_requested_at, render_progress_at, created_at),'
        ' COALESCE(render_progress_at, render_requested_at, created_at), render_deliveries'
        ' FROM jobs WHERE render_status IS NOT NULL'
    )
    op.execute(
        'INSERT INTO job_downloads (job_id, bytes_received, bytes_total, deliveries, progress_at)'
        ' SELECT id, COALESCE(bytes_downloaded, 0), bytes_total, download_deliveries,'
        ' COALESCE(download_progress_at, created_at)'
        ' FROM jobs WHERE source_url IS NOT NULL'
    )

    with op.batch_alter_table('jobs', schema=None) as batch_op:
        for _, old in RENDER_COLUMNS + DOWNLOAD_COLUMNS:
            batch_op.drop_column(old)


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('bytes_downloaded', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('bytes_total', sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column('download_deliveries', sa.Integer(), nullable=False, server_default='0')
        )
        batch_op.add_column(sa.Column('download_progress_at', TIME, nullable=True))
        batch_op.add_column(sa.Column('render_status', RENDER_STATUS, nullable=True))
        batch_op.add_column(sa.Column('render_key', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('render_frames_done', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('render_error', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('render_requested_at', TIME, nullable=True))
        batch_op.add_column(sa.Column('render_progress_at', TIME, nullable=True))
        batch_op.add_column(
            sa.Column('render_deliveries', sa.Integer(), nullable=False, server_default='0')
        )
        batch_op.add_column(sa.Column('render_bytes', sa.BigInteger(), nullable=True))
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.alter_column('download_deliveries', server_default=None)
        batch_op.alter_column('render_deliveries', server_default=None)

    for table, columns in (('job_renders', RENDER_COLUMNS), ('job_downloads', DOWNLOAD_COLUMNS)):
        assignments = ', '.join(
            f'{old} = (SELECT {new} FROM {table} WHERE {table}.job_id = jobs.id)' for new, old in columns
        )
        op.execute(
            f'UPDATE jobs SET {assignments}'
            f' WHERE EXISTS (SELECT 1 FROM {table} WHERE {table}.job_id = jobs.id)'
        )

    op.drop_table('job_downloads')
    with op.batch_alter_table('job_renders', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_renders_status'))
    op.drop_table('job_renders')
