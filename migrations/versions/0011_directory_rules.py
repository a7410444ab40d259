"""directory rules: exact service ages (from the age-band masks); a referral cancelled because the survivor was placed at another shelter

Revision ID: 0011_directory_rules
Revises: 0010_danger_sms_labels
Create Date: 2026-12-02 17:00:00

SQLite: no batch "move and copy" here. Rebuilding ``service`` or ``referral`` drops the old
table, and with ``foreign_keys=ON`` (always, app/database.py; a PRAGMA cannot change inside
the migration's transaction) that first deletes its rows: ``service_area`` and
``bed_snapshot`` rows go with them (ON DELETE CASCADE), ``message.service_id`` is nulled, and
so would be any later foreign key to ``referral``. So the columns are added in place
(``ALTER TABLE ... ADD COLUMN`` with their CHECK constraints, dropped with ``DROP COLUMN``)
and the cancel-reason CHECK is rewritten in the schema text, as SQLite documents for
constraint changes that leave the stored rows valid (https://sqlite.org/lang_altertable.html,
"Making Other Kinds Of Table Schema Changes"). PostgreSQL alters in place as usual.

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0011_directory_rules'
down_revision = '0010_danger_sms_labels'
branch_labels = None
depends_on = None

MIN_AGE_CHECK = "min_age IS NULL OR (min_age >= 0 AND min_age <= 150)"
MAX_AGE_CHECK = (
    "max_age IS NULL OR (max_age >= 0 AND max_age <= 150 "
    "AND (min_age IS NULL OR max_age >= min_age))"
)
# app.vocab.AGE_BANDS with their exact ages (inclusive; None: no upper end), bit i = band i.
AGE_BANDS = ((0, 17), (18, 24), (25, 34), (35, 49), (50, 64), (65, None))
ALL_AGES = (1 << len(AGE_BANDS)) - 1

CANCEL_REASONS = "'caseworker', 'consent_withdrawn', 'release_withdrawn', 'case_erased'"
PLACED_ELSEWHERE = "'placed_elsewhere'"
OLD_CANCEL_CHECK = f"cancel_reason IS NULL OR cancel_reason IN ({CANCEL_REASONS})"
NEW_CANCEL_CHECK = f"cancel_reason IS NULL OR cancel_reason IN ({CANCEL_REASONS}, {PLACED_ELSEWHERE})"

service = sa.table(
    'service',
    sa.column('age_mask', sa.Integer()),
    sa.column('min_age', sa.Integer()),
    sa.column('max_age', sa.Integer()),
)


def _sqlite():
    return op.get_bind().dialect.name == 'sqlite'


def _exact_ages(mask):
    """The tightest exact range a band mask implies: from its lowest band's first age to its
    highest band's last. A mask with a gap (under 18 and 50-64) cannot be one range: the gap
    is filled — never below its lowest band, so no younger person becomes eligible. No band
    or every band: all ages."""
    bands = [i for i in range(len(AGE_BANDS)) if mask & (1 << i)]
    if not bands or len(bands) == len(AGE_BANDS):
        return None, None, ALL_AGES
    low, high = bands[0], bands[-1]
    filled = sum(1 << i for i in range(low, high + 1))
    return (AGE_BANDS[low][0] or None), AGE_BANDS[high][1], filled


def _rewrite_sqlite_check(table, old, new):
    """Replace one CHECK expression in ``table``'s schema text (SQLite's documented way to
    change a constraint without moving rows). The rows must already satisfy ``new``."""
    bind = op.get_bind()
    sql = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).scalar()
    if sql is None or sql.count(old) != 1:
        raise RuntimeError(f"{table}: the CHECK to change is not in the schema as expected")
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar()
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    bind.exec_driver_sql(
        "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?",
        (sql.replace(old, new), table),
    )
    bind.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    bind.exec_driver_sql("PRAGMA writable_schema = OFF")


def upgrade():
    # Exact ages: the truth from now on; age_mask (the matching pre-filter) follows them.
    if _sqlite():
        op.execute(
            "ALTER TABLE service ADD COLUMN min_age INTEGER "
            f"CONSTRAINT ck_service_min_age CHECK ({MIN_AGE_CHECK})"
        )
        op.execute(
            "ALTER TABLE service ADD COLUMN max_age INTEGER "
            f"CONSTRAINT ck_service_max_age CHECK ({MAX_AGE_CHECK})"
        )
    else:
        with op.batch_alter_table('service', schema=None) as batch_op:
            batch_op.add_column(sa.Column('min_age', sa.Integer(), nullable=True))
            batch_op.add_column(sa.Column('max_age', sa.Integer(), nullable=True))
            batch_op.create_check_constraint(batch_op.f('ck_service_min_age'), MIN_AGE_CHECK)
            batch_op.create_check_constraint(batch_op.f('ck_service_max_age'), MAX_AGE_CHECK)
    bind = op.get_bind()
    masks = bind.execute(sa.select(service.c.age_mask).distinct()).scalars().all()
    for mask in masks:
        low, high, filled = _exact_ages(mask)
        bind.execute(
            service.update()
            .where(service.c.age_mask == mask)
            .values(min_age=low, max_age=high, age_mask=filled)
        )

    # A referral cancelled because the survivor was placed at another shelter.
    if _sqlite():
        _rewrite_sqlite_check('referral', OLD_CANCEL_CHECK, NEW_CANCEL_CHECK)
    else:
        with op.batch_alter_table('referral', schema=None) as batch_op:
            batch_op.drop_constraint(batch_op.f('ck_referral_cancel_reason'), type_='check')
            batch_op.create_check_constraint(
                batch_op.f('ck_referral_cancel_reason'), NEW_CANCEL_CHECK
            )


def downgrade():
    # The older schema has no such reason: those referrals read as cancelled by a caseworker.
    op.execute(
        "UPDATE referral SET cancel_reason = 'caseworker' "
        f"WHERE cancel_reason = {PLACED_ELSEWHERE}"
    )
    if _sqlite():
        _rewrite_sqlite_check('referral', NEW_CANCEL_CHECK, OLD_CANCEL_CHECK)
        # max_age first: its CHECK names min_age.
        op.execute("ALTER TABLE service DROP COLUMN max_age")
        op.execute("ALTER TABLE service DROP COLUMN min_age")
    else:
        with op.batch_alter_table('referral', schema=None) as batch_op:
            batch_op.drop_constraint(batch_op.f('ck_referral_cancel_reason'), type_='check')
            batch_op.create_check_constraint(
                batch_op.f('ck_referral_cancel_reason'), OLD_CANCEL_CHECK
            )
        with op.batch_alter_table('service', schema=None) as batch_op:
            batch_op.drop_constraint(batch_op.f('ck_service_max_age'), type_='check')
            batch_op.drop_constraint(batch_op.f('ck_service_min_age'), type_='check')
            batch_op.drop_column('max_age')
            batch_op.drop_column('min_age')
    # age_mask keeps the bands of the exact ages (a filled gap stays filled).
