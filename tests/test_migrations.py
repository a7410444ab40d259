"""Migrations (issue 2 §2): the migrated schema equals the models, and every revision upgrades
and downgrades, one step at a time, across every branch and merge of the revision graph.

Revisions are discovered from ``migrations/versions``: new ones join these tests by existing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext, MigrationStep
from alembic.script import Script, ScriptDirectory
from flask import Flask, current_app
from flask_migrate import upgrade
from sqlalchemy import inspect, text

from app import create_app
from app.core.extensions import db
from tests.conftest import make_config

# Behaviour that depends on the database, run on both: the migrated schema must match the models
# on both databases.
pytestmark = pytest.mark.both_databases


@pytest.fixture
def fresh_app(databases) -> Iterator[Flask]:
    """An app on a brand-new, empty database (not the shared, migrated test database)."""
    app = create_app(make_config(databases.fresh()))
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


def _config() -> Any:
    return current_app.extensions["migrate"].migrate.get_config()


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def _base_to_heads(script: ScriptDirectory) -> list[Script]:
    """Every revision, parents before children (walk_revisions goes from the heads down)."""
    return list(reversed(list(script.walk_revisions("base", "heads"))))


def _heads() -> set[str]:
    with db.engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def _expected_heads(script: ScriptDirectory, applied: set[str]) -> set[str]:
    """The version table alembic should hold when exactly ``applied`` revisions are in."""
    parents = {
        parent for rev in applied for parent in script.get_revision(rev)._normalized_down_revisions
    }
    return applied - parents


def _all_heads(script: ScriptDirectory) -> set[str]:
    """The version table once everything is applied (a revision that others only
    ``depends_on`` is not kept there, although alembic lists it among the heads)."""
    return _expected_heads(script, {r.revision for r in script.walk_revisions("base", "heads")})


def _run_step(script: ScriptDirectory, revision: Script, up: bool) -> None:
    """Apply (or undo) exactly one revision through the project's env.py, as `flask db`
    would. Alembic's own targets cannot express "undo only this revision" once there are
    several heads (`downgrade X` pulls down every branch above X), so the single step is
    handed to the migration context directly."""

    def steps(heads: Any, context: Any) -> list[MigrationStep]:
        make = MigrationStep.upgrade_from_script if up else MigrationStep.downgrade_from_script
        return [make(script.revision_map, revision)]

    with EnvironmentContext(_config(), script, fn=steps, destination_rev=revision.revision):
        script.run_env()


def _schema_differences() -> list[Any]:
    """Alembic autogenerate's comparison of the live schema with ``db.metadata``, with the
    same options as env.py (types compared too).

    Rule for our TypeDecorators: alembic compares a TypeDecorator by its ``impl`` (UTCDateTime
    → DateTime(timezone=True), MasterEncrypted → LargeBinary), which is exactly what the
    revisions create (env.py renders them so); nothing is filtered out here."""
    options = dict(current_app.extensions["migrate"].configure_args)
    options["compare_type"] = True
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts=options)
        return list(compare_metadata(context, db.metadata))


def _leftovers() -> list[str]:
    """Anything a full downgrade left behind: tables (besides alembic's own), and on
    PostgreSQL enum types and sequences."""
    found = [t for t in inspect(db.engine).get_table_names() if t != "alembic_version"]
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect() as conn:
            found += [
                f"type {name}"
                for name in conn.scalars(
                    text(
                        "SELECT t.typname FROM pg_type t JOIN pg_namespace n "
                        "ON n.oid = t.typnamespace WHERE n.nspname = 'public' AND t.typtype = 'e'"
                    )
                )
            ]
            found += [
                f"sequence {name}"
                for name in conn.scalars(
                    text("SELECT sequence_name FROM information_schema.sequences")
                )
            ]
    return found


def test_migrated_schema_equals_the_models(fresh_app):
    upgrade(revision="heads")
    assert _heads() == _all_heads(_script())
    differences = _schema_differences()
    assert differences == [], "models and migrations differ:\n" + "\n".join(
        repr(d) for d in differences
    )


def test_models_have_no_table_without_a_revision(fresh_app):
    upgrade(revision="heads")
    tables = set(inspect(db.engine).get_table_names())
    missing = {t.name for t in db.metadata.sorted_tables} - tables
    assert not missing, f"tables with no migration: {sorted(missing)}"


def test_every_revision_upgrades_and_downgrades_one_step_at_a_time(fresh_app):
    script = _script()
    order = _base_to_heads(script)
    assert order, "no revisions found"
    assert order[0].down_revision is None

    applied: set[str] = set()
    for revision in order:
        _run_step(script, revision, up=True)
        applied.add(revision.revision)
        assert _heads() == _expected_heads(script, applied), f"upgrade to {revision.revision}"
    assert _heads() == _all_heads(script)
    assert _schema_differences() == []

    for revision in reversed(order):
        _run_step(script, revision, up=False)
        applied.discard(revision.revision)
        assert _heads() == _expected_heads(script, applied), f"downgrade of {revision.revision}"
    assert _heads() == set()
    leftovers = _leftovers()
    assert leftovers == [], f"a full downgrade left {leftovers}"

    # And up again, all the way: the schema still matches the models.
    upgrade(revision="heads")
    assert _heads() == _all_heads(script)
    differences = _schema_differences()
    assert differences == [], "\n".join(repr(d) for d in differences)


def test_revision_graph_is_well_formed(fresh_app):
    script = _script()
    revisions = list(script.walk_revisions("base", "heads"))
    ids = [r.revision for r in revisions]
    assert len(ids) == len(set(ids))
    bases = [r.revision for r in revisions if r.down_revision is None]
    assert bases == ["0001_initial"], f"one base only, found {bases}"
    for revision in revisions:
        module = revision.module
        assert callable(getattr(module, "upgrade", None)), revision.revision
        assert callable(getattr(module, "downgrade", None)), revision.revision


def test_the_comparison_can_fail(fresh_app):
    """The checks above are only worth something if a drifted schema is noticed."""
    upgrade(revision="heads")
    with db.engine.begin() as conn:
        conn.execute(text("ALTER TABLE organization ADD COLUMN stray INTEGER"))
    differences = _schema_differences()
    assert any(d[0] == "remove_column" and d[2] == "organization" for d in differences)


@pytest.mark.postgres_only
@pytest.mark.parametrize(
    ("table", "column", "sql_type"),
    [
        ("audit_event", "action", "VARCHAR(10)"),
        ("data_key", "created_at", "TIMESTAMP WITHOUT TIME ZONE"),  # UTCDateTime's impl
        ("user_account", "totp_secret", "TEXT USING NULL"),  # MasterEncrypted's impl
    ],
)
def test_type_drift_is_noticed(fresh_app, table, column, sql_type):
    """(PostgreSQL only: SQLite cannot change a column's type in place.)"""
    upgrade(revision="heads")
    with db.engine.begin() as conn:
        conn.execute(text(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE {sql_type}"))
    differences = [d for group in _schema_differences() for d in _flatten(group)]
    assert any(d[0] == "modify_type" and d[2:4] == (table, column) for d in differences), (
        differences
    )


def _flatten(item: Any) -> list[Any]:
    return list(item) if isinstance(item, list) else [item]


def test_consent_decisions_of_existing_records_are_migrated(fresh_app):
    """0012 gives every consent record its decision. A "no" right after a grant of the same
    scope withdrew it; a "no" with no grant before it (the intake's unticked scopes, which
    were recorded as withdrawals) was a refusal. Downgrading drops the column again."""
    import sqlalchemy as sa

    script = _script()
    parent = script.get_revision("0012_consent_records_drafts").down_revision
    assert isinstance(parent, str)
    upgrade(revision=parent)
    at = sa.DateTime(timezone=True)
    organization = sa.table(
        "organization", sa.column("id"), sa.column("name"), sa.column("kind"),
        sa.column("totp_required"), sa.column("created_at", at),
    )
    case = sa.table(
        "survivor_case", sa.column("id"), sa.column("reference"), sa.column("organization_id"),
        sa.column("channel"), sa.column("status"), sa.column("accessibility"),
        sa.column("no_voicemail"), sa.column("do_not_text"), sa.column("created_at", at),
        sa.column("updated_at", at),
    )
    consent = sa.table(
        "consent", sa.column("id"), sa.column("case_id"), sa.column("scope"),
        sa.column("granted"), sa.column("method"), sa.column("text_version"),
        sa.column("language"), sa.column("recorded_at", at),
    )
    from datetime import UTC, datetime, timedelta

    t1 = datetime(2026, 11, 1, 9, tzinfo=UTC)
    t2, t3 = t1 + timedelta(days=1), t1 + timedelta(days=2)
    # (scope, granted, when) in id order -> the decision the migration must give
    rows = [
        ("store", True, t1, "grant"),
        ("contact_sms", True, t1, "grant"),
        ("contact_sms", False, t2, "withdraw"),
        ("share_medical", False, t1, "refuse"),
        ("explicit_wording", False, t1, "refuse"),
        ("explicit_wording", False, t2, "refuse"),
        ("share_legal", False, t3, "refuse"),  # newer than the pair below, inserted first
        ("share_legal", True, t1, "grant"),
        ("share_legal", False, t2, "withdraw"),
        ("share_other", True, t1, "grant"),
        ("share_other", False, t1, "withdraw"),  # same moment: the id orders them
    ]
    with db.engine.begin() as conn:
        conn.execute(organization.insert().values(
            id=1, name="NGO", kind="ngo", totp_required=False, created_at=t1))
        conn.execute(case.insert().values(
            id=1, reference="KQM-4MX", organization_id=1, channel="tablet", status="open",
            accessibility=False, no_voicemail=False, do_not_text=False, created_at=t1,
            updated_at=t1))
        for number, (scope, granted, when, _decision) in enumerate(rows, start=1):
            conn.execute(consent.insert().values(
                id=number, case_id=1, scope=scope, granted=granted, method="verbal",
                text_version="2026-11", language="en", recorded_at=when))
    upgrade(revision="0012_consent_records_drafts")
    with db.engine.connect() as conn:
        found = dict(conn.execute(text("SELECT id, decision FROM consent")).all())
    assert found == {number: row[3] for number, row in enumerate(rows, start=1)}

    from flask_migrate import downgrade

    downgrade(revision=parent)
    assert "decision" not in {c["name"] for c in inspect(db.engine).get_columns("consent")}
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM consent")).scalar() == len(rows)
def test_directory_rules_turn_age_masks_into_the_tightest_exact_ages(fresh_app):
    """0011_directory_rules: services kept eligibility as age-band masks; each becomes the
    exact range its bands imply (a gap between two bands is filled: the range is one
    interval), and the mask is derived from that range again. The way down keeps masks."""
    script = _script()
    mine = script.get_revision("0011_directory_rules")
    upgrade(revision=mine.down_revision)
    masks = {
        "all": 0b111111,
        "adults": 0b111110,
        "children": 0b000001,
        "young": 0b000011,
        "middle": 0b001100,  # 25_34 + 35_49
        "old": 0b100000,
        "gap": 0b010001,  # under_18 + 50_64
    }
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO organization (id, name, kind, totp_required, created_at) "
                "VALUES (1, 'Org', 'provider', false, CURRENT_TIMESTAMP)"
            )
        )
        for i, (name, mask) in enumerate(masks.items(), start=1):
            conn.execute(
                text(
                    "INSERT INTO service (id, organization_id, name, description, category, "
                    "languages, gender_mask, age_mask, accepts_children, wheelchair_access, "
                    "hearing_access, hours, timezone, active, created_at, updated_at) VALUES "
                    "(:id, 1, :name, '', 'legal', '', 15, :mask, true, false, false, '[]', "
                    "'UTC', true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"id": i, "name": name, "mask": mask},
            )
        # Rows that point at services: a table rebuilt on SQLite (foreign_keys=ON) would
        # take them with it (ON DELETE CASCADE).
        conn.execute(text("INSERT INTO area (id, name) VALUES (1, 'Harbour')"))
        conn.execute(text("INSERT INTO service_area (service_id, area_id) VALUES (1, 1)"))
        conn.execute(
            text(
                "INSERT INTO bed_snapshot (day, service_id, organization_id, beds_total, "
                "beds_available) VALUES (CURRENT_DATE, 1, 1, 4, 2)"
            )
        )

    def linked() -> tuple[int, int]:
        with db.engine.connect() as conn:
            return (
                conn.execute(text("SELECT count(*) FROM service_area")).scalar(),
                conn.execute(text("SELECT count(*) FROM bed_snapshot")).scalar(),
            )

    def cancel_check() -> str:
        [found] = [
            c["sqltext"]
            for c in inspect(db.engine).get_check_constraints("referral")
            if c["name"] == "ck_referral_cancel_reason"
        ]
        return str(found)

    assert "placed_elsewhere" not in cancel_check()
    _run_step(script, mine, up=True)
    assert linked() == (1, 1)
    assert "'placed_elsewhere'" in cancel_check() and "'case_erased'" in cancel_check()
    with db.engine.connect() as conn:
        rows = {
            r.name: (r.min_age, r.max_age, r.age_mask)
            for r in conn.execute(text("SELECT name, min_age, max_age, age_mask FROM service"))
        }
    assert rows == {
        "all": (None, None, 0b111111),
        "adults": (18, None, 0b111110),
        "children": (None, 17, 0b000001),
        "young": (None, 24, 0b000011),
        "middle": (25, 49, 0b001100),
        "old": (65, None, 0b100000),
        "gap": (None, 64, 0b011111),
    }
    _run_step(script, mine, up=False)
    assert linked() == (1, 1)
    assert "placed_elsewhere" not in cancel_check() and "'case_erased'" in cancel_check()
    with db.engine.connect() as conn:
        kept = conn.execute(text("SELECT age_mask FROM service WHERE name = 'middle'")).scalar()
    assert kept == 0b001100


def test_upgrading_and_downgrading_keeps_every_row(fresh_app):
    """Revisions after 0008 rebuild tables on SQLite (a new foreign key or constraint). With
    foreign keys enforced, dropping the old table would cascade to its children (a case's
    needs and consents, a service's areas, a case's messages) or fail; the migration
    environment turns them off for the rebuild and checks them afterwards. Real rows of the
    0008 schema go up to the head and back down, every one kept."""
    base = "0008_audit_object_index"
    upgrade(revision=base)
    rows = {
        "organization": [
            "INSERT INTO organization (id, name, kind, totp_required, created_at) "
            "VALUES (1, 'NGO', 'ngo', false, :at), (2, 'Shelter Org', 'provider', false, :at)"
        ],
        "user_account": [
            "INSERT INTO user_account (id, organization_id, username, password_hash, role, "
            "active, session_token, password_changed_at, created_at) VALUES "
            "(1, 1, 'cw', 'x', 'caseworker', true, 't', :at, :at)"
        ],
        "area": ["INSERT INTO area (id, name) VALUES (1, 'North'), (2, 'North Harbour')",
                 "UPDATE area SET parent_id = 1 WHERE id = 2"],
        "service": [
            "INSERT INTO service (id, organization_id, name, description, category, languages, "
            "gender_mask, age_mask, accepts_children, wheelchair_access, hearing_access, hours, "
            "timezone, active, beds_total, beds_available, created_at, updated_at) VALUES "
            "(1, 2, 'Refuge', '', 'shelter', 'en', 15, 62, true, false, false, '[]', 'UTC', "
            "true, 10, 9, :at, :at)"
        ],
        "service_area": ["INSERT INTO service_area (service_id, area_id) VALUES (1, 2)"],
        "bed_snapshot": [
            "INSERT INTO bed_snapshot (day, service_id, organization_id, beds_total, "
            "beds_available) VALUES ('2026-11-01', 1, 2, 10, 9)"
        ],
        "survivor_case": [
            "INSERT INTO survivor_case (id, reference, organization_id, created_by_id, channel, "
            "status, area_id, accessibility, no_voicemail, do_not_text, created_at, updated_at) "
            "VALUES (1, 'KQM-4MX', 1, 1, 'tablet', 'open', 2, false, false, false, :at, :at)"
        ],
        "need": [
            "INSERT INTO need (case_id, category, urgency, created_at) VALUES "
            "(1, 'shelter', 'immediate', :at), (1, 'legal', 'soon', :at)"
        ],
        "consent": [
            "INSERT INTO consent (case_id, scope, granted, method, text_version, language, "
            "recorded_at) VALUES (1, 'store', true, 'verbal', '2026-11', 'en', :at), "
            "(1, 'share_shelter', true, 'verbal', '2026-11', 'en', :at)"
        ],
        "hotline_session": [
            "INSERT INTO hotline_session (phone_index, step, failures, urgent, menu_page, "
            "case_id, created_at, last_message_at) VALUES ('ab', 'done', 0, false, 0, 1, :at, :at)"
        ],
        "referral_release": [
            "INSERT INTO referral_release (id, case_id, organization_id, method, granted_at, "
            "expires_at) VALUES (1, 1, 2, 'verbal', :at, :at)"
        ],
        "referral": [
            "INSERT INTO referral (id, code, case_id, service_id, category, organization_id, "
            "referring_organization_id, release_id, shared_fields, status, created_at, "
            "updated_at, hold_expires_at, hold_status) VALUES (1, 'ABC-DEF', 1, 1, 'shelter', "
            "2, 1, 1, '[]', 'pending', :at, :at, :at, 'held')"
        ],
        "sms_message": [
            "INSERT INTO sms_message (direction, audience, language, params, status, attempts, "
            "remote_delete_attempts, case_id, service_id, created_at, updated_at) VALUES "
            "('out', 'survivor', 'en', '{}', 'queued', 0, 0, 1, NULL, :at, :at), "
            "('out', 'provider', 'en', '{}', 'queued', 0, 0, NULL, 1, :at, :at)"
        ],
    }
    from datetime import UTC, datetime

    at = datetime(2026, 11, 1, 9, tzinfo=UTC)
    with db.engine.begin() as conn:
        for statements in rows.values():
            for statement in statements:
                conn.execute(text(statement), {"at": at})

    def counts() -> dict[str, int]:
        with db.engine.connect() as conn:
            return {
                table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
                for table in rows
            }

    def links() -> tuple[Any, ...]:
        with db.engine.connect() as conn:
            return (
                conn.execute(text("SELECT area_id, created_by_id FROM survivor_case")).one(),
                conn.execute(text("SELECT case_id FROM hotline_session")).scalar_one(),
                sorted(conn.execute(text("SELECT case_id, service_id FROM sms_message")).all(),
                       key=repr),
                conn.execute(text("SELECT parent_id FROM area WHERE id = 2")).scalar_one(),
            )

    before, linked = counts(), links()
    assert all(before.values())
    upgrade(revision="heads")
    assert counts() == before
    assert links() == linked
    from flask_migrate import downgrade

    downgrade(revision=base)
    assert counts() == before
    assert links() == linked
