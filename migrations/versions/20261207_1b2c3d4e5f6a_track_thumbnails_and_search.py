"""track thumbnails and the indexes that search moments across jobs

track_thumbnails: one small JPEG per track, made by the tracking step from the
track's best-scoring object, which tracks now keep (best_frame, best_score,
best_box; null for older tracks). Search
reads a user's jobs newest first (jobs by owner and created_at) and each job's
tracks of some labels (tracks by job and label).

Revision ID: 1b2c3d4e5f6a
Revises: 0a1b2c3d4e5f
Create Date: 2026-12-07 06:00:00.000000
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = '1b2c3d4e5f6a'
down_revision = '0a1b2c3d4e5f'
branch_labels = None
depends_on = None


JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table(
        'track_thumbnails',
        sa.Column('job_id', sa.String(length=32), nullable=False),
        sa.Column('track_id', sa.Integer(), nullable=False),
        sa.Column('frame', sa.Integer(), nullable=False),
        sa.Column('jpeg', sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ['job_id'], ['jobs.id'], name=op.f('fk_track_thumbnails_job_id_jobs'), ondelete='CASCADE'
        ),
        sa.PrimaryKeyConstraint('job_id', 'track_id', name=op.f('pk_track_thumbnails')),
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index('ix_jobs_owner_id_created_at', ['owner_id', 'created_at', 'id'], unique=False)
    with op.batch_alter_table('tracks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('best_frame', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('best_score', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('best_box', JSON, nullable=True))
        batch_op.create_index('ix_tracks_job_id_label', ['job_id', 'label'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('tracks', schema=None) as batch_op:
        batch_op.drop_index('ix_tracks_job_id_label')
        batch_op.drop_column('best_box')
        batch_op.drop_column('best_score')
        batch_op.drop_column('best_frame')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_owner_id_created_at')
    op.drop_table('track_thumbnails')
