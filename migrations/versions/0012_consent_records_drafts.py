"""consent records say what they are: grant, withdraw or refuse (drafts need no schema)

Revision ID: 0012_consent_records_drafts
Revises: 0011_directory_rules
Create Date: 2026-12-02 17:00:00

Existing records are classified from what was recorded before them: a "no" right after a
grant of the same scope (by recorded_at, then id) withdrew that grant; any other "no" — the
intake's unticked scopes, which were recorded as withdrawals, or a "no" after another "no" —
refused something that was not granted.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0012_consent_records_drafts'
down_revision = '0011_directory_rules'
branch_labels = None
depends_on = None


CLASSIFY = """
UPDATE consent SET decision = CASE
    WHEN granted THEN 'grant'
    WHEN (
        SELECT previous.granted FROM consent AS previous
        WHERE previous.case_id = consent.case_id
          AND previous.scope = consent.scope
          AND (previous.recorded_at < consent.recorded_at
               OR (previous.recorded_at = consent.recorded_at AND previous.id < consent.id))
        ORDER BY previous.recorded_at DESC, previous.id DESC
        LIMIT 1
    ) THEN 'withdraw'
    ELSE 'refuse'
END
"""


def upgrade():
    with op.batch_alter_table('consent', schema=None) as batch_op:
        batch_op.add_column(sa.Column('decision', sa.String(length=8), nullable=True))

    op.execute(CLASSIFY)

    with op.batch_alter_table('consent', schema=None) as batch_op:
        batch_op.alter_column('decision', existing_type=sa.String(length=8), nullable=False)
        batch_op.create_check_constraint(
            'decision', "decision IN ('grant', 'withdraw', 'refuse')"
        )
        batch_op.create_check_constraint('decision_granted', "granted = (decision = 'grant')")


def downgrade():
    with op.batch_alter_table('consent', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_consent_decision_granted'), type_='check')
        batch_op.drop_constraint(batch_op.f('ck_consent_decision'), type_='check')
        batch_op.drop_column('decision')
