"""job model name fits any model identity (a weights URL can be long)

Revision ID: 3b8e5d1f6a27
Revises: 7c1e2a9b4d30
Create Date: 2026-12-02 07:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '3b8e5d1f6a27'
down_revision = '7c1e2a9b4d30'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.alter_column(
            'model_name', existing_type=sa.String(length=128), type_=sa.String(length=1024)
        )


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.alter_column(
            'model_name', existing_type=sa.String(length=1024), type_=sa.String(length=128)
        )
