"""job options, tracks and annotated videos

Jobs get what they analyse (a span, a stride or a sampling rate, classes),
whether they track objects and their tracking progress, and their annotated
video's status; chunks get the frames they analyse; tracks get a table.

Revision ID: e1f4a7c3b925
Revises: c7d2b9e4f160
Create Date: 2026-12-02 15:20:00.000000
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

import detector.models.base

# revision identifiers, used by Alembic.
revision = 'e1f4a7c3b925'
down_revision = 'c7d2b9e4f160'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
RENDER_STATUS = sa.Enum('queued', 'rendering', 'succeeded', 'failed', name='render_status')
TIME = detector.models.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    if op.get_context().dialect.name == 'postgresql':
        RENDER_STATUS.create(op.get_bind(), checkfirst=True)
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sample_fps', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('frame_stride', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('start_time', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('end_time', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('classes', JSON, nullable=True))
        batch_op.add_column(sa.Column('track', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('frames_tracked', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('tracked_at', TIME, nullable=True))
        batch_op.add_column(sa.Column('tracks_total', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('render_status', RENDER_STATUS, nullable=True))
        batch_op.add_column(sa.Column('render_key', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('render_frames_done', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('render_error', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('render_requested_at', TIME, nullable=True))
        batch_op.add_column(sa.Column('render_progress_at', TIME, nullable=True))
        batch_op.add_column(
            sa.Column('render_deliveries', sa.Integer(), nullable=False, server_default='0')
        )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.alter_column('track', server_default=None)
        batch_op.alter_column('render_deliveries', server_default=None)
    with op.batch_alter_table('chunks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('frames', JSON, nullable=True))

    op.create_table('tracks',
    sa.Column('job_id', sa.String(length=32), nullable=False),
    sa.Column('track_id', sa.Integer(), nullable=False),
    sa.Column('label', sa.String(length=255), nullable=False),
    sa.Column('class_id', sa.Integer(), nullable=False),
    sa.Column('first_frame', sa.Integer(), nullable=False),
    sa.Column('last_frame', sa.Integer(), nullable=False),
    sa.Column('first_timestamp', sa.Float(), nullable=False),
    sa.Column('last_timestamp', sa.Float(), nullable=False),
    sa.Column('frames', sa.Integer(), nullable=False),
    sa.Column('mean_score', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'track_id')
    )


def downgrade() -> None:
    op.drop_table('tracks')
    with op.batch_alter_table('chunks', schema=None) as batch_op:
        batch_op.drop_column('frames')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        for column in (
            'render_deliveries', 'render_progress_at', 'render_requested_at', 'render_error',
            'render_frames_done', 'render_key', 'render_status', 'tracks_total', 'tracked_at',
            'frames_tracked', 'track', 'classes', 'end_time', 'start_time', 'frame_stride',
            'sample_fps',
        ):
            batch_op.drop_column(column)
    if op.get_context().dialect.name == 'postgresql':
        RENDER_STATUS.drop(op.get_bind(), checkfirst=True)
