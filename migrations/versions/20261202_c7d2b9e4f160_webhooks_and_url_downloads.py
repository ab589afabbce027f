"""webhooks and video downloads from URLs

Jobs get a callback_url, a source_url with download progress and a new status,
downloading; users get a webhook signing secret; job events and their delivery
attempts get a table.

Revision ID: c7d2b9e4f160
Revises: a4c9e7f2d851
Create Date: 2026-12-02 07:10:00.000000
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

import detector.models.base

# revision identifiers, used by Alembic.
revision = 'c7d2b9e4f160'
# Chained after the API-keys revision (itself on 3b8e5d1f6a27) so that there is one head.
down_revision = 'a4c9e7f2d851'
branch_labels = None
depends_on = None

OLD_STATUSES = ('queued', 'processing', 'succeeded', 'failed', 'cancelled')
NEW_STATUSES = ('downloading',) + OLD_STATUSES
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    if op.get_context().dialect.name == 'postgresql':
        # ALTER TYPE ... ADD VALUE cannot run inside a transaction block (before PG 12)
        # and the new value cannot be used in the transaction that adds it.
        with op.get_context().autocommit_block():
            op.execute("ALTER TYPE job_status ADD VALUE IF NOT EXISTS 'downloading' BEFORE 'queued'")
    else:
        # SQLite: the enum is a VARCHAR as long as its longest value.
        with op.batch_alter_table('jobs', schema=None) as batch_op:
            batch_op.alter_column(
                'status',
                existing_type=sa.Enum(*OLD_STATUSES, name='job_status'),
                type_=sa.Enum(*NEW_STATUSES, name='job_status'),
                existing_nullable=False,
            )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('callback_url', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('source_url', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('bytes_downloaded', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('bytes_total', sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column('download_deliveries', sa.Integer(), nullable=False, server_default='0')
        )
        batch_op.add_column(
            sa.Column('download_progress_at', detector.models.base.UTCDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.alter_column('download_deliveries', server_default=None)

    op.create_table('webhook_secrets',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('secret', sa.String(length=128), nullable=False),
    sa.Column('created_at', detector.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_webhook_secrets_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_webhook_secrets'))
    )
    op.create_table('webhook_events',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('job_id', sa.String(length=32), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('payload', JSON, nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', JSON, nullable=False),
    sa.Column('created_at', detector.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('next_attempt_at', detector.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('delivered_at', detector.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_webhook_events_job_id_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_events'))
    )
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhook_events_job_id'), ['job_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhook_events_job_id'))
    op.drop_table('webhook_events')
    op.drop_table('webhook_secrets')
    op.execute("DELETE FROM jobs WHERE status = 'downloading'")
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('download_progress_at')
        batch_op.drop_column('download_deliveries')
        batch_op.drop_column('bytes_total')
        batch_op.drop_column('bytes_downloaded')
        batch_op.drop_column('source_url')
        batch_op.drop_column('callback_url')
    if op.get_context().dialect.name == 'postgresql':
        # PostgreSQL cannot drop an enum value: rebuild the type without it.
        op.execute("ALTER TYPE job_status RENAME TO job_status_old")
        op.execute("CREATE TYPE job_status AS ENUM ('queued', 'processing', 'succeeded', 'failed', 'cancelled')")
        op.execute("DROP INDEX IF EXISTS ix_jobs_status")
        op.execute(
            "ALTER TABLE jobs ALTER COLUMN status TYPE job_status USING status::text::job_status"
        )
        op.execute("CREATE INDEX ix_jobs_status ON jobs (status)")
        op.execute("DROP TYPE job_status_old")
    else:
        with op.batch_alter_table('jobs', schema=None) as batch_op:
            batch_op.alter_column(
                'status',
                existing_type=sa.Enum(*NEW_STATUSES, name='job_status'),
                type_=sa.Enum(*OLD_STATUSES, name='job_status'),
                existing_nullable=False,
            )
