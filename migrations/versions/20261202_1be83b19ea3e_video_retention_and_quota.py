"""video retention and storage quota

Jobs get the sizes of their stored video and annotated render (a user's
STORAGE_QUOTA_MB counts them), when VIDEO_RETENTION_DAYS deletes both files
(indexed: the watchdog looks for expired ones) and when it did.

Revision ID: 1be83b19ea3e
Revises: e1f4a7c3b925
Create Date: 2026-12-02 18:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

import detector.models.base

# revision identifiers, used by Alembic.
revision = '1be83b19ea3e'
down_revision = 'e1f4a7c3b925'
branch_labels = None
depends_on = None

TIME = detector.models.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('video_bytes', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('render_bytes', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('video_expires_at', TIME, nullable=True))
        batch_op.add_column(sa.Column('video_deleted_at', TIME, nullable=True))
        batch_op.create_index(batch_op.f('ix_jobs_video_expires_at'), ['video_expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_jobs_video_expires_at'))
        for column in ('video_deleted_at', 'video_expires_at', 'render_bytes', 'video_bytes'):
            batch_op.drop_column(column)
