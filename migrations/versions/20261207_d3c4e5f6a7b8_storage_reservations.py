"""storage accounting that cannot be raced

Users get two counters (detector.pipeline.quota): the bytes of their stored videos
and annotated videos, and the bytes reserved for videos being stored now, one
storage_reservations row each. Existing users' used bytes start from their jobs'
video_bytes and render_bytes whose videos are not deleted (sizes not recorded yet
are added when the watchdog measures them).

Revision ID: d3c4e5f6a7b8
Revises: c2b3d4e5f6a7
Create Date: 2026-12-07 03:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

import detector.models.base

# revision identifiers, used by Alembic.
revision = 'd3c4e5f6a7b8'
down_revision = 'c2b3d4e5f6a7'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('storage_used_bytes', sa.BigInteger(), server_default='0', nullable=False)
        )
        batch_op.add_column(
            sa.Column('storage_reserved_bytes', sa.BigInteger(), server_default='0', nullable=False)
        )
    op.execute(
        'UPDATE users SET storage_used_bytes = ('
        ' SELECT COALESCE(SUM(COALESCE(jobs.video_bytes, 0) + COALESCE(jobs.render_bytes, 0)), 0)'
        ' FROM jobs WHERE jobs.owner_id = users.id AND jobs.video_deleted_at IS NULL)'
    )

    op.create_table(
        'storage_reservations',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('owner_id', sa.Integer(), nullable=False),
        sa.Column('job_id', sa.String(length=32), nullable=True),
        sa.Column('bytes', sa.BigInteger(), nullable=False),
        sa.Column('expires_at', detector.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ['owner_id'], ['users.id'], name=op.f('fk_storage_reservations_owner_id_users'), ondelete='CASCADE'
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_storage_reservations')),
    )
    with op.batch_alter_table('storage_reservations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_storage_reservations_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_storage_reservations_job_id'), ['job_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_storage_reservations_owner_id'), ['owner_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('storage_reservations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_storage_reservations_owner_id'))
        batch_op.drop_index(batch_op.f('ix_storage_reservations_job_id'))
        batch_op.drop_index(batch_op.f('ix_storage_reservations_expires_at'))
    op.drop_table('storage_reservations')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('storage_reserved_bytes')
        batch_op.drop_column('storage_used_bytes')
