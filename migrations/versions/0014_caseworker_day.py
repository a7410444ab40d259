"""caseworker's day: follow-ups, case assignment, close reasons (issue 16)

Revision ID: 0014_caseworker_day
Revises: 0013_user_sessions
Create Date: 2026-12-08 03:30:00

Existing open cases made on a tablet are assigned to the caseworker who made them (the
default from now on); hotline cases stay unassigned until someone takes them.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0014_caseworker_day'
down_revision = '0013_user_sessions'
branch_labels = None
depends_on = None

CLOSE_REASONS = "('goals_met', 'referred_elsewhere', 'lost_contact', 'survivor_choice', 'moved_away')"


def upgrade():
    op.create_table('follow_up',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('recorded_by_id', sa.Integer(), nullable=True),
    sa.Column('occurred_on', sa.Date(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('outcome', sa.String(length=20), nullable=False),
    sa.Column('next_on', sa.Date(), nullable=True),
    sa.Column('data_key_id', sa.Integer(), nullable=True),
    sa.Column('note_enc', sa.LargeBinary(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('call', 'meeting', 'message', 'provider_contact')", name=op.f('ck_follow_up_kind')),
    sa.CheckConstraint("outcome IN ('reached', 'not_reached', 'needs_met', 'needs_changed', 'rescheduled')", name=op.f('ck_follow_up_outcome')),
    sa.ForeignKeyConstraint(['case_id'], ['survivor_case.id'], name=op.f('fk_follow_up_case_id_survivor_case'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['data_key_id'], ['data_key.id'], name=op.f('fk_follow_up_data_key_id_data_key'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['recorded_by_id'], ['user_account.id'], name=op.f('fk_follow_up_recorded_by_id_user_account'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_follow_up'))
    )
    with op.batch_alter_table('follow_up', schema=None) as batch_op:
        batch_op.create_index('ix_follow_up_case_id_id', ['case_id', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_follow_up_data_key_id'), ['data_key_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_follow_up_next_on'), ['next_on'], unique=False)

    with op.batch_alter_table('survivor_case', schema=None) as batch_op:
        batch_op.add_column(sa.Column('assigned_to_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('close_reason', sa.String(length=20), nullable=True))
        batch_op.create_index(batch_op.f('ix_survivor_case_assigned_to_id'), ['assigned_to_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_survivor_case_assigned_to_id_user_account'), 'user_account', ['assigned_to_id'], ['id'], ondelete='SET NULL')
        batch_op.create_check_constraint(batch_op.f('ck_survivor_case_close_reason'), f"close_reason IS NULL OR close_reason IN {CLOSE_REASONS}")

    with op.batch_alter_table('case_statistic', schema=None) as batch_op:
        batch_op.add_column(sa.Column('close_reason', sa.String(length=20), nullable=True))

    op.execute(
        "UPDATE survivor_case SET assigned_to_id = created_by_id "
        "WHERE channel = 'tablet' AND status = 'open' AND created_by_id IS NOT NULL"
    )


def downgrade():
    with op.batch_alter_table('case_statistic', schema=None) as batch_op:
        batch_op.drop_column('close_reason')

    with op.batch_alter_table('survivor_case', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_survivor_case_close_reason'), type_='check')
        batch_op.drop_constraint(batch_op.f('fk_survivor_case_assigned_to_id_user_account'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_survivor_case_assigned_to_id'))
        batch_op.drop_column('close_reason')
        batch_op.drop_column('assigned_to_id')

    with op.batch_alter_table('follow_up', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_follow_up_next_on'))
        batch_op.drop_index(batch_op.f('ix_follow_up_data_key_id'))
        batch_op.drop_index('ix_follow_up_case_id_id')

    op.drop_table('follow_up')
