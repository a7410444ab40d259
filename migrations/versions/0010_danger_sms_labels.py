"""danger reports on cases (and on hotline sessions before consent); SMS labels for areas

Revision ID: 0010_danger_sms_labels
Revises: 0009_contact_safety
Create Date: 2026-12-02 18:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010_danger_sms_labels'
down_revision = '0009_contact_safety'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('survivor_case', schema=None) as batch_op:
        batch_op.add_column(sa.Column('danger_reported_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('danger_acknowledged_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('danger_acknowledged_by_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_survivor_case_danger_acknowledged_by_id_user_account'), 'user_account', ['danger_acknowledged_by_id'], ['id'], ondelete='SET NULL')

    with op.batch_alter_table('hotline_session', schema=None) as batch_op:
        batch_op.add_column(sa.Column('danger_reported_at', sa.DateTime(timezone=True), nullable=True))

    # No label for any existing area: an admin approves each one (issue 13); until then the
    # hotline offers the area by its number.
    with op.batch_alter_table('area', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sms_label', sa.String(length=24), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_area_sms_label'), ['sms_label'])


def downgrade():
    with op.batch_alter_table('area', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_area_sms_label'), type_='unique')
        batch_op.drop_column('sms_label')

    with op.batch_alter_table('hotline_session', schema=None) as batch_op:
        batch_op.drop_column('danger_reported_at')

    with op.batch_alter_table('survivor_case', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_survivor_case_danger_acknowledged_by_id_user_account'), type_='foreignkey')
        batch_op.drop_column('danger_acknowledged_by_id')
        batch_op.drop_column('danger_acknowledged_at')
        batch_op.drop_column('danger_reported_at')
