"""organization settings: time zone, contact line for providers, phone region

Revision ID: 0015_org_settings
Revises: 0014_caseworker_day
Create Date: 2026-12-08 03:30:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0015_org_settings'
down_revision = '0014_caseworker_day'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('organization', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('timezone', sa.String(length=64), server_default='UTC', nullable=False)
        )
        batch_op.add_column(sa.Column('contact_phone', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('phone_region', sa.String(length=2), nullable=True))


def downgrade():
    with op.batch_alter_table('organization', schema=None) as batch_op:
        batch_op.drop_column('phone_region')
        batch_op.drop_column('contact_phone')
        batch_op.drop_column('timezone')
