"""channels: WhatsApp and voice beside SMS (issue 18). A hotline conversation is keyed by
number and channel; messages carry their channel and a failure reason a caseworker sees;
messages from senders that are not phone numbers are only counted, per day and kind.

Revision ID: 0017_channels
Revises: 0016_hsds_interop
Create Date: 2026-12-08 03:30:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0017_channels'
down_revision = '0016_hsds_interop'
branch_labels = None
depends_on = None

CHANNELS = "channel IN ('sms', 'whatsapp', 'voice')"


def upgrade():
    with op.batch_alter_table('hotline_session', schema=None) as batch_op:
        batch_op.add_column(sa.Column('channel', sa.String(length=10), server_default='sms', nullable=False))
        batch_op.drop_constraint('uq_hotline_session_phone_index', type_='unique')
        batch_op.create_unique_constraint('uq_hotline_session_phone_channel', ['phone_index', 'channel'])
        batch_op.create_check_constraint('channel', CHANNELS)

    with op.batch_alter_table('sms_message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('channel', sa.String(length=10), server_default='sms', nullable=False))
        batch_op.add_column(sa.Column('failure_reason', sa.String(length=24), nullable=True))
        batch_op.create_check_constraint('channel', CHANNELS)

    op.create_table('hotline_ignored_sender',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_hotline_ignored_sender')),
    sa.UniqueConstraint('day', 'kind', name='uq_hotline_ignored_sender_day_kind')
    )


def downgrade():
    op.drop_table('hotline_ignored_sender')

    with op.batch_alter_table('sms_message', schema=None) as batch_op:
        batch_op.drop_constraint('channel', type_='check')
        batch_op.drop_column('failure_reason')
        batch_op.drop_column('channel')

    # A number that used several channels keeps its SMS conversation only.
    op.execute("DELETE FROM hotline_session WHERE channel <> 'sms'")
    with op.batch_alter_table('hotline_session', schema=None) as batch_op:
        batch_op.drop_constraint('channel', type_='check')
        batch_op.drop_constraint('uq_hotline_session_phone_channel', type_='unique')
        batch_op.create_unique_constraint('uq_hotline_session_phone_index', ['phone_index'])
        batch_op.drop_column('channel')
