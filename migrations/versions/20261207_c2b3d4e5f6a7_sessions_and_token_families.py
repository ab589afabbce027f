"""accounts hardened: refresh token families, sessions

Revision ID: c2b3d4e5f6a7
Revises: b1a2c3d4e5f6
Create Date: 2026-12-07 03:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

import detector.models.base


# revision identifiers, used by Alembic.
revision = 'c2b3d4e5f6a7'
down_revision = 'b1a2c3d4e5f6'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'token_families',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('current_jti', sa.String(length=64), nullable=False),
        sa.Column('previous_jti', sa.String(length=64), nullable=True),
        sa.Column('created_at', detector.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column('rotated_at', detector.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column('expires_at', detector.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column('revoked_at', detector.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ['user_id'], ['users.id'], name=op.f('fk_token_families_user_id_users'), ondelete='CASCADE'
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_token_families')),
    )
    with op.batch_alter_table('token_families', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_token_families_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_token_families_user_id'), ['user_id'], unique=False)

    # Tokens issued before this revision carry no generation: they count as generation 0.
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('token_generation', sa.Integer(), server_default='0', nullable=False))
    # Existing API keys get no scope: they keep doing what they did, and no more.
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scopes', sa.String(length=200), server_default='', nullable=False))
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attempt_count', sa.Integer(), server_default='0', nullable=False))
    length = 'jsonb_array_length' if op.get_bind().dialect.name == 'postgresql' else 'json_array_length'
    op.execute(f'UPDATE webhook_events SET attempt_count = {length}(attempts) WHERE attempts IS NOT NULL')


def downgrade() -> None:
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.drop_column('attempt_count')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_column('scopes')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('token_generation')
    with op.batch_alter_table('token_families', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_token_families_user_id'))
        batch_op.drop_index(batch_op.f('ix_token_families_expires_at'))
    op.drop_table('token_families')
