"""hsds interop: confidential locations, the service fields a caseworker reads (eligibility
description, url, email) and the organization's description

Existing shelters become confidential: a refuge's address is secret unless someone who knows
says otherwise, so the safe default applies to rows made before the setting existed too.

Revision ID: 0016_hsds_interop
Revises: 0015_org_settings
Create Date: 2026-12-08 03:30:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0016_hsds_interop'
down_revision = '0015_org_settings'
branch_labels = None
depends_on = None


def upgrade():
    # Plain ADD COLUMN (no batch): a batch rebuild of `service` on SQLite would rewrite the
    # CHECK constraints 0011 manages by hand.
    op.add_column('service', sa.Column('location_confidential', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column('service', sa.Column('eligibility_description', sa.Text(), server_default='', nullable=False))
    op.add_column('service', sa.Column('url', sa.String(length=500), nullable=True))
    op.add_column('service', sa.Column('email', sa.String(length=254), nullable=True))
    op.add_column('organization', sa.Column('description', sa.Text(), server_default='', nullable=False))
    op.execute(
        sa.text("UPDATE service SET location_confidential = :yes WHERE category = 'shelter'")
        .bindparams(yes=True)
    )


def downgrade():
    # Plain DROP COLUMN on both databases: a batch rebuild of `service` on SQLite would
    # rewrite the CHECK constraints that 0011's downgrade drops by hand.
    op.execute("ALTER TABLE organization DROP COLUMN description")
    for column in ('email', 'url', 'eligibility_description', 'location_confidential'):
        op.execute(f"ALTER TABLE service DROP COLUMN {column}")
