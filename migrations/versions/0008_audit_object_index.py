"""audit events: index for one object's timeline (case page)

Revision ID: 0008_audit_object_index
Revises: 0007_retention
Create Date: 2026-11-23 15:25:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0008_audit_object_index'
down_revision = '0007_retention'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.create_index('ix_audit_event_object', ['object_type', 'object_id', 'seq'], unique=False)


def downgrade():
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_event_object')
