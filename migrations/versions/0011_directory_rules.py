"""directory rules: a referral cancelled because the survivor was placed at another shelter

Revision ID: 0011_directory_rules
Revises: 0008_audit_object_index
Create Date: 2026-12-02 17:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0011_directory_rules'
down_revision = '0008_audit_object_index'
branch_labels = None
depends_on = None

CANCEL_REASONS = "'caseworker', 'consent_withdrawn', 'release_withdrawn', 'case_erased'"
PLACED_ELSEWHERE = "'placed_elsewhere'"


def upgrade():
    with op.batch_alter_table('referral', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_referral_cancel_reason'), type_='check')
        batch_op.create_check_constraint(
            batch_op.f('ck_referral_cancel_reason'),
            f"cancel_reason IS NULL OR cancel_reason IN ({CANCEL_REASONS}, {PLACED_ELSEWHERE})",
        )


def downgrade():
    # The older schema has no such reason: those referrals read as cancelled by a caseworker.
    op.execute(
        "UPDATE referral SET cancel_reason = 'caseworker' "
        f"WHERE cancel_reason = {PLACED_ELSEWHERE}"
    )
    with op.batch_alter_table('referral', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_referral_cancel_reason'), type_='check')
        batch_op.create_check_constraint(
            batch_op.f('ck_referral_cancel_reason'),
            f"cancel_reason IS NULL OR cancel_reason IN ({CANCEL_REASONS})",
        )
