"""contact safety: structured safe hours in her zone, flag for hours to check, referral of a message

Revision ID: 0009_contact_safety
Revises: 0008_audit_object_index
Create Date: 2026-12-02 17:00:00

Schema: ``survivor_case.safe_hours_check`` (free-text safe hours not converted: no outbox SMS
to her until a caseworker saves them), ``survivor_case.timezone`` and ``area.timezone`` (her
safe hours are read on her clock), ``sms_message.referral_id`` (what a survivor text is
about, so a change of the referral cancels it).

Data: every case that holds safe hours holds them as free text (sealed with the case's own
key). First, in SQL, every one of them is flagged — so nothing is sent on a misread hour even
if the next step cannot run (offline SQL, keys missing). Then, with the app's master keys,
each is opened and converted with ``app.consent.safe_hours.parse_legacy`` when it reads exactly one
way (its flag lifted); the rest keep their text and their flag for a caseworker to check.

Downgrade: the columns go; converted values stay in their JSON form, which the free-text
parser of 0008 does not read as a time (it sees "unreadable safe hours" and sends no
automatic text), so going back never texts at a wrong hour.
"""
from alembic import context, op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009_contact_safety'
down_revision = '0008_audit_object_index'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('area', schema=None) as batch_op:
        batch_op.add_column(sa.Column('timezone', sa.String(length=64), nullable=True))

    with op.batch_alter_table('survivor_case', schema=None) as batch_op:
        batch_op.add_column(sa.Column('safe_hours_check', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('timezone', sa.String(length=64), nullable=True))

    with op.batch_alter_table('sms_message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('referral_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_sms_message_referral_id'), ['referral_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_sms_message_referral_id_referral'), 'referral', ['referral_id'], ['id'], ondelete='SET NULL')

    op.execute(
        sa.text("UPDATE survivor_case SET safe_hours_check = :yes WHERE safe_hours_enc IS NOT NULL")
        .bindparams(yes=True)
    )
    if not context.is_offline_mode():
        _convert_legacy_safe_hours()


def _convert_legacy_safe_hours():
    """Open each flagged value with its case's data key; store the structured form where the
    old text reads one way. Values whose key cannot be opened stay flagged."""
    from cryptography.fernet import Fernet, InvalidToken, MultiFernet
    from flask import current_app

    from app.consent.safe_hours import dumps, parse_legacy

    keys = [k.strip() for k in current_app.config.get('HAVEN_DATA_KEYS', '').split(',') if k.strip()]
    if not keys:
        return
    master = MultiFernet([Fernet(k.encode()) for k in keys])
    bind = op.get_bind()
    rows = bind.execute(sa.text(
        "SELECT c.id, c.safe_hours_enc, k.wrapped FROM survivor_case c "
        "JOIN data_key k ON k.id = c.data_key_id "
        "WHERE c.safe_hours_check = :yes AND c.safe_hours_enc IS NOT NULL ORDER BY c.id"
    ).bindparams(yes=True)).all()
    for case_id, sealed, wrapped in rows:
        try:
            record_key = Fernet(master.decrypt(bytes(wrapped)))
            typed = record_key.decrypt(bytes(sealed)).decode()
        except (InvalidToken, ValueError):
            continue
        windows = parse_legacy(typed)
        if windows is None:
            continue
        stored = dumps(windows)
        bind.execute(
            sa.text("UPDATE survivor_case SET safe_hours_enc = :sealed, safe_hours_check = :no "
                    "WHERE id = :id").bindparams(
                sa.bindparam('sealed', type_=sa.LargeBinary()),
            ),
            {"sealed": record_key.encrypt(stored.encode()) if stored else None, "no": False, "id": case_id},
        )


def downgrade():
    with op.batch_alter_table('sms_message', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_sms_message_referral_id_referral'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_sms_message_referral_id'))
        batch_op.drop_column('referral_id')

    with op.batch_alter_table('survivor_case', schema=None) as batch_op:
        batch_op.drop_column('timezone')
        batch_op.drop_column('safe_hours_check')

    with op.batch_alter_table('area', schema=None) as batch_op:
        batch_op.drop_column('timezone')
