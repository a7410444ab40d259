"""Open Referral HSDS 3.0 import/export (issue 4): our own fixtures written from the
specification (tests/fixtures/hsds/, every kind of bad row), the examples shipped with the
specification (../shared/hsds-3.0/examples), idempotent re-import and the export round trip."""

from __future__ import annotations

import copy
import csv
import io
import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from app.core.crypto import blind_index
from app.core.extensions import db
from app.models import Area, AuditEvent, Organization, Service
from tests import factories
from tests.hsds_shared import shared_root

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures", "hsds")
REPO = os.path.dirname(HERE)
# The nearest shared/hsds-3.0 above the checkout (a worktree sits deeper than /work/main).
SHIPPED = str(shared_root() / "examples")


def run_import(app: Any, path: str) -> Any:
    result = app.test_cli_runner().invoke(args=["directory", "import-hsds", path])
    db.session.expire_all()
    return result


def errors_of(result: Any) -> str:
    return str(result.stderr)


def service(hsds_id: str) -> Service:
    found = db.session.scalar(select(Service).where(Service.hsds_id == hsds_id))
    assert found is not None, hsds_id
    return found


def count(model: Any) -> int:
    return db.session.scalar(select(func.count()).select_from(model)) or 0


# --- JSON fixtures ---------------------------------------------------------------------------


def test_json_import_reports_every_bad_row_and_imports_the_rest(app: Any) -> None:
    result = run_import(app, os.path.join(FIXTURES, "json"))
    assert result.exit_code == 0, result.output
    err = errors_of(result)
    expected = [
        "not-json.json: not readable JSON",
        "organizations.json, row 3: organization without a name (row skipped)",
        "organizations.json, row 1: numeric timezone offset '2': read as fixed UTC+2",
        "services.json, row 1: unknown language code 'xx'",
        "services.json, row 1: phone number had stray quotes: normalised",
        "services.json, row 2: organization 99999999-0000-4000-8000-00000000dead not found "
        "(row skipped)",
        "services.json, row 3: latitude 95.5 out of range",
        "services.json, row 4: phone number is not a valid number",
        "services.json, row 4: numeric timezone offset '5.5' is not a whole hour",
        "services.json, row 4: minimum_age 'adult' is not a number",
        "services.json, row 5: service 33333333-0000-4000-8000-000000000005 has no name "
        "(row skipped)",
        "services.json, row 6: schedule opening times are not HH:MM",
        "services.json, row 6: unknown timezone 'Mars/Olympus'",
        "services.json, row 7: not an object (row skipped)",
    ]
    for line in expected:
        assert line in err, line
    assert "organizations: 2 created, 0 updated; services: 6 created" in result.output
    # No phone number in the report: it names files, rows and reasons only.
    assert "555" not in err

    refuge = service("22222222-0000-4000-8000-000000000001")
    assert refuge.category == "shelter"  # from the taxonomy term
    assert refuge.organization.name == "Harbour Women's Refuge"
    assert refuge.organization.hsds_id == "11111111-0000-4000-8000-000000000001"
    assert refuge.language_list == ("en", "es", "ar")  # en, ara -> ar, es-MX -> es
    # The feed's phone is reported, never trusted as the intake phone (issue 13.8).
    assert refuge.intake_phone is None and refuge.intake_phone_index is None
    assert (
        "organizations.json, row 1: service 22222222-0000-4000-8000-000000000001: feed phone "
        "not used as the intake phone; an admin or the provider sets it on the service form"
    ) in err
    assert (refuge.latitude, refuge.longitude) == (37.77, -122.42)
    assert refuge.wheelchair_access and not refuge.hearing_access
    assert refuge.timezone == "America/Los_Angeles"
    assert len(refuge.hours) == 7
    assert sorted(a.name for a in refuge.areas) == ["Bay County", "Harbour District"]

    night = service("22222222-0000-4000-8000-000000000002")
    assert night.category == "psychosocial"
    assert night.language_list == ("fr",)  # from the language name
    assert night.timezone == "Etc/GMT-2"  # UTC+2
    assert night.hours == [[4, "20:00", "06:00"], [5, "20:00", "06:00"]]
    assert (night.min_age, night.max_age) == (18, None)  # exact, not "18–24 and up"

    legal = service("33333333-0000-4000-8000-000000000001")
    assert legal.category == "legal"
    assert legal.language_list == ("es",)
    assert legal.intake_phone is None
    court = service("33333333-0000-4000-8000-000000000003")
    assert court.latitude is None and court.longitude is None
    order = service("33333333-0000-4000-8000-000000000004")
    assert order.intake_phone is None and order.intake_phone_index is None
    assert order.timezone == "UTC"
    assert order.hours == [[0, "09:00", "12:00"]]
    assert (order.min_age, order.max_age) == (None, None)  # "adult" is not a number
    assert service("33333333-0000-4000-8000-000000000006").active is False
    assert (
        db.session.scalar(
            select(Service).where(Service.hsds_id == "33333333-0000-4000-8000-000000000002")
        )
        is None
    )
    assert count(Area) == 2


def test_tabular_package_import(app: Any) -> None:
    result = run_import(app, os.path.join(FIXTURES, "tabular"))
    assert result.exit_code == 0, result.output
    err = errors_of(result)
    expected = [
        "organizations.csv, row 3: organization without a name (row skipped)",
        "languages.csv, row 3: unknown language code 'tlh'",
        "languages.csv, row 4: refers to service 55555555-0000-4000-8000-00000000cafe",
        "phones.csv, row 2: phone number had stray quotes: normalised",
        "phones.csv, row 3: phone number is not a valid number",
        "schedules.csv, row 2: numeric timezone offset '-8'",
        "schedules.csv, row 3: schedule frequency 'MONTHLY' not supported",
        "locations.csv, row 3: latitude -91 out of range",
        "service_areas.csv, row 4: service area without a name",
        "service_at_location.csv, row 4: location aaaaaaaa-0000-4000-8000-00000000ffff "
        "is not in locations",
        # the multi-line description of row 2 moves the next rows down one line
        "services.csv, row 5: organization 44444444-0000-4000-8000-00000000beef not found "
        "(row skipped)",
    ]
    for line in expected:
        assert line in err, line
    assert "services: 3 created" in result.output
    clinic = service("55555555-0000-4000-8000-000000000001")
    assert clinic.category == "medical"
    assert clinic.language_list == ("uk",)
    assert clinic.intake_phone is None
    assert "service 55555555-0000-4000-8000-000000000001: feed phone not used" in err
    assert clinic.timezone == "Etc/GMT+8"  # UTC-8
    assert clinic.hearing_access is True
    assert clinic.latitude == pytest.approx(37.76)
    youth = service("55555555-0000-4000-8000-000000000002")
    assert youth.category == "psychosocial"
    assert (youth.min_age, youth.max_age) == (12, 17)
    assert youth.hours == []
    assert [a.name for a in youth.areas] == ["Eastside"]
    assert service("55555555-0000-4000-8000-000000000004").category == "other"
    assert count(Area) == 1  # "Eastside" once, shared


@pytest.mark.both_databases
def test_reimport_is_idempotent(app: Any) -> None:
    for folder in ("json", "tabular"):
        assert run_import(app, os.path.join(FIXTURES, folder)).exit_code == 0
    before = (count(Organization), count(Service), count(Area))
    snapshot = {
        s.hsds_id: (s.name, s.category, s.languages, s.hours, s.timezone)
        for s in db.session.scalars(select(Service))
    }
    for folder in ("json", "tabular"):
        again = run_import(app, os.path.join(FIXTURES, folder))
        assert again.exit_code == 0
        assert " 0 created" in again.output and "services: 0 created" in again.output
    assert (count(Organization), count(Service), count(Area)) == before
    assert snapshot == {
        s.hsds_id: (s.name, s.category, s.languages, s.hours, s.timezone)
        for s in db.session.scalars(select(Service))
    }


def test_reimport_keeps_provider_managed_fields(app: Any) -> None:
    assert run_import(app, os.path.join(FIXTURES, "json")).exit_code == 0
    refuge = service("22222222-0000-4000-8000-000000000001")
    refuge.beds_total, refuge.beds_available = 10, 3
    refuge.genders = ["female"]
    db.session.commit()
    assert run_import(app, os.path.join(FIXTURES, "json")).exit_code == 0
    refuge = service("22222222-0000-4000-8000-000000000001")
    assert (refuge.beds_total, refuge.beds_available, refuge.genders) == (10, 3, ("female",))


def test_reimport_of_a_partial_record_keeps_what_it_leaves_out(app: Any, tmp_path: Any) -> None:
    assert run_import(app, os.path.join(FIXTURES, "json")).exit_code == 0
    partial = [
        {
            "id": "11111111-0000-4000-8000-000000000001",
            "name": "Harbour Women's Refuge",
            "services": [
                {"id": "22222222-0000-4000-8000-000000000001", "name": "Emergency Refuge (new)"}
            ],
        }
    ]
    path = tmp_path / "partial.json"
    path.write_text(json.dumps(partial))
    assert run_import(app, str(path)).exit_code == 0
    refuge = service("22222222-0000-4000-8000-000000000001")
    assert refuge.name == "Emergency Refuge (new)"
    assert refuge.category == "shelter"  # from the name now
    assert refuge.language_list == ("en", "es", "ar")
    assert len(refuge.hours) == 7 and refuge.timezone == "America/Los_Angeles"
    assert refuge.latitude == 37.77 and refuge.wheelchair_access
    assert sorted(a.name for a in refuge.areas) == ["Bay County", "Harbour District"]
    assert refuge.intake_phone is None


def test_import_never_changes_the_intake_phone_and_reports_the_difference(app: Any) -> None:
    """The intake phone receives referral codes and may send ACCEPT, DECLINE and BEDS: a
    feed must never change it (issue 13.8). An admin or the provider sets it; the import
    says where the feed's number differs, without printing either number."""
    assert run_import(app, os.path.join(FIXTURES, "json")).exit_code == 0
    refuge = service("22222222-0000-4000-8000-000000000001")
    legal = service("33333333-0000-4000-8000-000000000001")
    refuge.set_intake_phone("+14155550177")  # the shelter's own number, not the feed's
    legal.set_intake_phone("+14155550102")  # the same as the feed's
    db.session.commit()
    events_before = count(AuditEvent)

    again = run_import(app, os.path.join(FIXTURES, "json"))
    assert again.exit_code == 0, again.output
    err = errors_of(again)
    assert (
        "organizations.json, row 1: service 22222222-0000-4000-8000-000000000001: feed phone "
        "differs from the intake phone; not changed"
    ) in err
    assert "service 33333333-0000-4000-8000-000000000001: feed phone" not in err
    assert "555" not in err and "0177" not in err
    refuge = service("22222222-0000-4000-8000-000000000001")
    assert refuge.intake_phone == "+14155550177"
    assert refuge.intake_phone_index == blind_index("+14155550177")
    assert service("33333333-0000-4000-8000-000000000001").intake_phone == "+14155550102"
    changes = db.session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "service.intake_phone_change", AuditEvent.seq > events_before
        )
    ).all()
    assert changes == []


@pytest.mark.parametrize(
    ("given", "kept", "reported"),
    [
        ({"minimum_age": 12}, (12, None), None),
        ({"minimum_age": 12, "maximum_age": 100}, (12, 100), None),
        ({"maximum_age": "17"}, (None, 17), None),
        ({"minimum_age": 0, "maximum_age": 17}, (0, 17), None),
        ({"minimum_age": 17.5}, (18, None), "minimum_age 17.5 is not a whole number: read as 18"),
        ({"maximum_age": 64.5}, (None, 64), "maximum_age 64.5 is not a whole number: read as 64"),
        ({"minimum_age": 30, "maximum_age": 20}, (None, None), "minimum_age above maximum_age"),
        ({"minimum_age": 200}, (None, None), "minimum_age 200 out of range"),
    ],
)
def test_ages_are_imported_exactly(
    app: Any, tmp_path: Any, given: dict[str, Any], kept: Any, reported: str | None
) -> None:
    feed = [
        {
            "id": "11111111-0000-4000-8000-0000000000aa",
            "name": "Age Org",
            "services": [{"id": "22222222-0000-4000-8000-0000000000aa", "name": "Ages", **given}],
        }
    ]
    path = tmp_path / "ages.json"
    path.write_text(json.dumps(feed))
    result = run_import(app, str(path))
    assert result.exit_code == 0, result.output
    imported = service("22222222-0000-4000-8000-0000000000aa")
    assert (imported.min_age, imported.max_age) == kept
    if reported:
        assert reported in errors_of(result)
    else:
        assert errors_of(result).strip() == ""


def test_contradictory_ages_on_reimport_keep_the_stored_ones(app: Any, tmp_path: Any) -> None:
    def feed(**ages: Any) -> str:
        path = tmp_path / "feed.json"
        path.write_text(json.dumps([{
            "id": "11111111-0000-4000-8000-0000000000ab",
            "name": "Age Org",
            "services": [{"id": "22222222-0000-4000-8000-0000000000ab", "name": "Ages", **ages}],
        }]))
        return str(path)

    assert run_import(app, feed(minimum_age=16, maximum_age=24)).exit_code == 0
    assert run_import(app, feed(minimum_age=30, maximum_age=20)).exit_code == 0
    kept = service("22222222-0000-4000-8000-0000000000ab")
    assert (kept.min_age, kept.max_age) == (16, 24)  # never widened to "all ages"


def test_export_does_not_publish_intake_phones(app: Any, tmp_path: Any) -> None:
    factories.make_service(category="shelter", intake_phone="+14155550199")
    db.session.commit()
    target = tmp_path / "export.json"
    out = app.test_cli_runner().invoke(args=["directory", "export-hsds", str(target)])
    assert out.exit_code == 0, out.output
    text = target.read_text()
    assert "4155550199" not in text and '"phones"' not in text


def test_import_never_sets_or_changes_sms_labels(app: Any, tmp_path: Any) -> None:
    """Issue 13 item 7: a feed names areas as it likes; only an admin approves what the
    hotline may text. Imported areas have no SMS label, and a label an admin approved for
    an area the feed also names is left as it is."""
    approved = factories.make_area("Harbour District", sms_label="Harbour")
    db.session.commit()
    unsafe = "Shelter for trafficking victims http://x.example"
    feed = [
        {
            "id": "11111111-0000-4000-8000-0000000000aa",
            "name": "Feed Org",
            "services": [
                {
                    "id": "22222222-0000-4000-8000-0000000000aa",
                    "name": "Feed Service",
                    "service_areas": [
                        {"id": "sa1", "name": unsafe, "sms_label": "Shelter"},
                        {"id": "sa2", "name": "Harbour District", "sms_label": "Refuge"},
                    ],
                }
            ],
        }
    ]
    path = tmp_path / "feed.json"
    path.write_text(json.dumps(feed))
    for _ in range(2):
        assert run_import(app, str(path)).exit_code == 0
    labels = dict(db.session.execute(select(Area.name, Area.sms_label)).all())
    assert labels == {unsafe: None, "Harbour District": "Harbour"}
    assert db.session.get(Area, approved.id).sms_label == "Harbour"  # type: ignore[union-attr]


def test_hand_made_organization_is_linked_not_duplicated(app: Any) -> None:
    factories.make_org("provider", name="Bayview Legal Clinic")
    db.session.commit()
    assert run_import(app, os.path.join(FIXTURES, "json")).exit_code == 0
    orgs = db.session.scalars(
        select(Organization).where(Organization.name == "Bayview Legal Clinic")
    ).all()
    assert len(orgs) == 1 and orgs[0].hsds_id == "11111111-0000-4000-8000-000000000002"


def test_nothing_usable_exits_non_zero_and_changes_nothing(app: Any) -> None:
    result = run_import(app, os.path.join(FIXTURES, "broken"))
    assert result.exit_code == 1
    err = errors_of(result)
    assert "garbage.json: not readable JSON" in err
    assert "orphans.json, row 1: organization nowhere not found" in err
    assert "Nothing usable" in err
    assert count(Service) == 0 and count(Organization) == 0 and count(AuditEvent) == 0
    missing = run_import(app, os.path.join(FIXTURES, "no-such-folder"))
    assert missing.exit_code == 1


def test_import_is_audited(app: Any) -> None:
    assert run_import(app, os.path.join(FIXTURES, "tabular")).exit_code == 0
    actions = [e.action for e in db.session.scalars(select(AuditEvent).order_by(AuditEvent.seq))]
    assert actions.count("service.import") == 3
    assert "organization.import" in actions and actions[-1] == "directory.import_hsds"


def test_category_mapping_is_configurable(app_factory: Any) -> None:
    app = app_factory(HSDS_CATEGORY_KEYWORDS={"legal": ["food"], "medical": ["clinic"]})
    with app.app_context():
        try:
            assert run_import(app, os.path.join(FIXTURES, "tabular")).exit_code == 0
            assert service("55555555-0000-4000-8000-000000000004").category == "legal"
            assert service("55555555-0000-4000-8000-000000000002").category == "other"
        finally:
            from tests.conftest import _empty_all_tables

            db.session.remove()
            _empty_all_tables()
            db.session.remove()


# --- the examples shipped with the specification ------------------------------------------


def test_shipped_tabular_package(app: Any) -> None:
    result = run_import(app, os.path.join(SHIPPED, "csv"))
    assert result.exit_code == 0, result.output
    err = errors_of(result)
    # (Whatever form the shipped datapackage.json takes on this disk — the real descriptor,
    # or a link stored as text — the standard files are read: see the two tests below.)
    assert "phones.csv, row 2: phone number had stray quotes: normalised" in err
    assert "locations.csv, row 2: latitude 100 out of range" in err
    assert "languages.csv, row 2: unknown language code 'ur'" in err
    assert "schedules.csv, row 2: numeric timezone offset '3'" in err
    counselling = service("ac148810-d857-441c-9679-408f346de14b")
    assert counselling.category == "psychosocial"
    assert counselling.organization.name == "Example Organization Inc."
    assert counselling.intake_phone is None
    assert counselling.timezone == "Etc/GMT-3"
    assert counselling.hours == [[3, "10:00", "18:00"], [4, "10:00", "18:00"]]
    assert counselling.latitude is None


def _copy_shipped_csv(tmp_path: Any) -> Any:
    """The shipped CSV files, copied by content (links followed) into a folder of our own."""
    folder = tmp_path / "package"
    folder.mkdir()
    source = os.path.join(SHIPPED, "csv")
    for name in os.listdir(source):
        if name.endswith(".csv"):
            with open(os.path.join(source, name), "rb") as fh:
                (folder / name).write_bytes(fh.read())
    return folder


def test_real_descriptor_is_read_without_complaint(app: Any, tmp_path: Any) -> None:
    folder = _copy_shipped_csv(tmp_path)
    resources = [
        {"name": name[:-4], "path": name, "profile": "tabular-data-resource"}
        for name in sorted(os.listdir(folder))
    ]
    (folder / "datapackage.json").write_text(
        json.dumps({"name": "hsds", "profile": "tabular-data-package", "resources": resources})
    )
    result = run_import(app, str(folder))
    assert result.exit_code == 0, result.output
    assert "datapackage.json" not in errors_of(result)
    assert service("ac148810-d857-441c-9679-408f346de14b").category == "psychosocial"


def test_broken_descriptor_is_reported_and_standard_names_read(app: Any, tmp_path: Any) -> None:
    folder = _copy_shipped_csv(tmp_path)
    # What a symbolic link looks like when it arrives as a plain file: its target as text.
    (folder / "datapackage.json").write_text("../../schema/datapackage.json")
    result = run_import(app, str(folder))
    assert result.exit_code == 0, result.output
    assert "datapackage.json: not a valid data package descriptor" in errors_of(result)
    assert service("ac148810-d857-441c-9679-408f346de14b").category == "psychosocial"


def test_shipped_json_examples_then_tabular_update_the_same_rows(app: Any) -> None:
    result = run_import(app, SHIPPED)
    assert result.exit_code == 0, result.output
    assert "organizations: 1 created" in result.output and "services: 1 created" in result.output
    again = run_import(app, os.path.join(SHIPPED, "csv"))
    assert again.exit_code == 0
    assert "services: 0 created, 1 updated" in again.output
    assert count(Service) == 1 and count(Organization) == 1


# --- export ---------------------------------------------------------------------------------


def test_export_round_trip(app: Any, tmp_path: Any) -> None:
    assert run_import(app, os.path.join(FIXTURES, "json")).exit_code == 0
    assert run_import(app, os.path.join(FIXTURES, "tabular")).exit_code == 0
    hand_made = factories.make_service(
        factories.make_org("provider", name="Hand Made Org"),
        category="legal",
        name="Hand made",
        languages="ar,en",
        intake_phone="+14155550199",
        latitude=1.5,
        longitude=2.5,
        min_age=21,
        hours=[[0, "09:00", "17:00"], [1, "09:00", "17:00"]],
        timezone="Europe/Paris",
        areas=[Area(name="Old Town")],
        hearing_access=True,
    )
    db.session.commit()

    def state() -> dict[str, tuple[Any, ...]]:
        db.session.expire_all()
        return {
            s.hsds_id: (
                s.organization.name,
                s.name,
                s.description,
                s.category,
                sorted(s.language_list),
                # A confidential place (imported shelters start so) is withheld from the
                # export by design (issue 17): it cannot come back from it.
                "withheld" if s.location_confidential else s.latitude,
                "withheld" if s.location_confidential else s.longitude,
                s.location_confidential,
                s.min_age,
                s.max_age,
                s.age_mask,
                s.hours,
                s.timezone,
                s.active,
                s.wheelchair_access,
                s.hearing_access,
                sorted(a.name for a in s.areas),
            )
            for s in db.session.scalars(select(Service))
        }

    before = state()
    assert hand_made.hsds_id in before
    target = tmp_path / "export.json"
    out = app.test_cli_runner().invoke(args=["directory", "export-hsds", str(target)])
    assert out.exit_code == 0, out.output
    data = json.loads(target.read_text())
    assert {o["name"] for o in data} >= {"Harbour Women's Refuge", "Hand Made Org"}
    exported = {s["name"]: s for o in data for s in o["services"]}
    # Exact ages, as given (issue 13.11): not widened to the bands they fall in.
    assert exported["Hand made"]["minimum_age"] == 21
    assert "maximum_age" not in exported["Hand made"]
    youth = exported["Youth Mental Health Support"]
    assert (youth["minimum_age"], youth["maximum_age"]) == (12, 17)
    assert "minimum_age" not in exported["Food Bank"]

    from tests.conftest import _empty_all_tables

    db.session.remove()
    _empty_all_tables()
    result = run_import(app, str(target))
    assert result.exit_code == 0, result.output
    assert errors_of(result).strip() == ""
    assert state() == before
    # Intake phones are Haven's own trust, not directory data: neither exported nor imported.
    assert all(s.intake_phone is None for s in db.session.scalars(select(Service)))


# --- files from outside: limits, types, encodings, links (issue 14 item 5) ----------------


def _tabular_copy(tmp_path: Any) -> Any:
    """Our tabular fixture package, copied so a test can spoil one file of it."""
    folder = tmp_path / "package"
    folder.mkdir()
    source = os.path.join(FIXTURES, "tabular")
    for name in os.listdir(source):
        with open(os.path.join(source, name), "rb") as fh:
            (folder / name).write_bytes(fh.read())
    return folder


def _refused(result: Any, path: Any) -> str:
    """The command ended with a report and a non-zero exit (no traceback), and nothing was
    written."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert count(Service) == 0 and count(Organization) == 0 and count(AuditEvent) == 0
    err = errors_of(result)
    assert f"Nothing imported from {path}" in err
    return err


def test_nesting_200000_levels_deep_is_reported_not_a_recursion_error(
    app: Any, tmp_path: Any
) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 200_000 + "]" * 200_000)
    err = _refused(run_import(app, str(path)), path)
    assert "deep.json: not readable JSON: nested deeper than 64 levels (line 1, column 65)" in err


def test_json_syntax_errors_name_line_and_column(app: Any, tmp_path: Any) -> None:
    path = tmp_path / "typo.json"
    path.write_text('[\n  {"id": "o1",\n   "name": }\n]\n')
    err = _refused(run_import(app, str(path)), path)
    assert "typo.json: not readable JSON (line 3, column 12: Expecting value)" in err


@pytest.mark.both_databases
def test_wrong_types_are_reported_per_row_and_never_become_names(
    app: Any, tmp_path: Any
) -> None:
    rows = [
        {"id": "o1", "name": ["a"], "services": []},
        {"id": "o2", "name": "Second Street Shelter Trust", "services": 5},
        {
            "id": "o3",
            "name": "Third Avenue Legal",
            "services": [
                {
                    "id": "s1",
                    "name": "Asylum Advice Desk",
                    "description": ["free", "advice"],
                    "status": {"value": "active"},
                    "phones": "+14155550100",
                    "languages": [{"code": ["es"]}, "fr", {"code": "en"}],
                    "schedules": [{"opens_at": True, "closes_at": "17:00"}],
                },
                {"id": "s2", "name": {"en": "Court Support"}},
                {"id": ["s3"], "name": "Listed Id"},
            ],
        },
        {"services": 5},
    ]
    path = tmp_path / "types.json"
    path.write_text(json.dumps(rows))
    result = run_import(app, str(path))
    assert result.exit_code == 0, result.output
    err = errors_of(result)
    for line in [
        "types.json, row 1: field name must be text: ignored",
        "types.json, row 1: organization without a name (row skipped)",
        "types.json, row 2: field services must be a list: ignored",
        "types.json, row 3: field description must be text: ignored",
        "types.json, row 3: field status must be text: ignored",
        "types.json, row 3: field phones must be a list: ignored",
        "types.json, row 3: field code must be text: ignored",
        "types.json, row 3: field languages: 1 item is not an object: ignored",
        "types.json, row 3: field opens_at must be text: ignored",
        "types.json, row 3: field name must be text: ignored",
        "types.json, row 3: service s2 has no name (row skipped)",
        "types.json, row 3: field id must be text: ignored",
        "types.json, row 3: service without a usable id (row skipped)",
        "types.json, row 4: organization without a usable id (row skipped)",
    ]:
        assert line in err, line
    names = set(db.session.scalars(select(Organization.name)))
    assert names == {"Second Street Shelter Trust", "Third Avenue Legal"}
    desk = service("s1")
    assert desk.description == "" and desk.language_list == ("en",)
    assert {s.name for s in db.session.scalars(select(Service))} == {"Asylum Advice Desk"}


@pytest.mark.both_databases
def test_a_nul_in_a_tabular_services_organization_id_is_a_row_problem(
    app: Any, tmp_path: Any
) -> None:
    """PostgreSQL refuses a NUL in a query parameter: the organization a services.csv row
    names goes through the same field checks as the rest of the row, before any query."""
    folder = _tabular_copy(tmp_path)
    (folder / "services.csv").write_text(
        "id,organization_id,name\n"
        "nul-1,44444444-0000-4000-8000-000000000001\x00x,Night shelter\n"
        "ok-1,44444444-0000-4000-8000-000000000001,Day centre\n",
        encoding="utf-8",
    )
    result = run_import(app, str(folder))
    assert result.exit_code == 0, result.output
    err = errors_of(result)
    assert "services.csv, row 2: field organization_id contains a NUL character: ignored" in err
    assert "services.csv, row 2: service has no organization (row skipped)" in err
    assert {s.hsds_id for s in db.session.scalars(select(Service))} == {"ok-1"}


def test_invalid_utf8_in_a_csv_is_named_with_its_line(app: Any, tmp_path: Any) -> None:
    folder = _tabular_copy(tmp_path)
    lines = (folder / "services.csv").read_bytes().split(b"\n")
    lines[3] = lines[3].replace(b"Youth", b"Y\xffouth")  # the record on line 4
    (folder / "services.csv").write_bytes(b"\n".join(lines))
    err = _refused(run_import(app, str(folder)), folder)
    assert "services.csv: not UTF-8 text: invalid byte 0xff at line 4" in err
    assert "neither organizations.csv nor services.csv" not in err
    # What could be read is still reported.
    assert "organizations.csv, row 3: organization without a name (row skipped)" in err
    assert "Nothing imported from" in err and "services.csv could not be read" in err


def test_a_field_over_the_limit_is_a_row_problem_not_an_unreadable_file(
    app: Any, tmp_path: Any
) -> None:
    folder = _tabular_copy(tmp_path)
    big = "x" * 200_000
    with open(folder / "services.csv", "a", encoding="utf-8") as fh:
        fh.write(f"55555555-0000-4000-8000-000000000009,44444444-0000-4000-8000-000000000001,"
                 f"Night Clinic,,{big},active,,\n")
        fh.write(f"55555555-0000-4000-8000-000000000010,44444444-0000-4000-8000-000000000001,"
                 f"{big},,,active,,\n")
    result = run_import(app, str(folder))
    assert result.exit_code == 0, result.output
    err = errors_of(result)
    assert "services.csv, row 7: field description is longer than 10000 characters: ignored" in err
    assert "services.csv, row 8: field name is longer than 10000 characters: ignored" in err
    assert "services.csv, row 8: service 55555555-0000-4000-8000-000000000010 has no name" in err
    assert "services: 4 created" in result.output
    assert service("55555555-0000-4000-8000-000000000009").description == ""
    assert len(err) < 5_000  # the report never echoes the field


def test_size_limits_are_configurable(app_factory: Any, tmp_path: Any) -> None:
    app = app_factory(HSDS_MAX_FILE_BYTES=2_000, HSDS_MAX_FIELD_CHARS=20)
    with app.app_context():
        try:
            path = tmp_path / "big.json"
            path.write_text(json.dumps([{"id": "o1", "name": "x" * 3_000, "services": []}]))
            err = _refused(run_import(app, str(path)), path)
            assert "big.json: larger than 2000 bytes (HAVEN_HSDS_MAX_FILE_BYTES): not read" in err
            path.write_text(
                json.dumps([{"id": "o1", "name": "A name of 21 letters.", "services": []}])
            )
            result = run_import(app, str(path))
            assert "row 1: field name is longer than 20 characters: ignored" in errors_of(result)
        finally:
            from tests.conftest import _empty_all_tables

            db.session.remove()
            _empty_all_tables()
            db.session.remove()


def test_the_limits_come_from_the_environment() -> None:
    from config import TestingConfig
    from tests.conftest import TEST_ENV

    config = TestingConfig(
        dict(TEST_ENV, HAVEN_HSDS_MAX_FILE_BYTES="1000", HAVEN_HSDS_MAX_FIELD_CHARS="50")
    )
    assert (config.HSDS_MAX_FILE_BYTES, config.HSDS_MAX_FIELD_CHARS) == (1000, 50)
    default = TestingConfig(dict(TEST_ENV))
    assert (default.HSDS_MAX_FILE_BYTES, default.HSDS_MAX_FIELD_CHARS) == (20_000_000, 10_000)


def test_memory_is_bounded_by_the_size_limit(app: Any, tmp_path: Any) -> None:
    """A 60 MB name in a 60 MB file: refused before it is read, with memory far below the
    file's size."""
    import tracemalloc

    from app.directory import hsds

    path = tmp_path / "huge.json"
    with open(path, "w", encoding="utf-8") as fh:
        fh.write('[{"id": "o1", "name": "')
        chunk = "n" * 1_000_000
        for _ in range(60):
            fh.write(chunk)
        fh.write('"}]')
    tracemalloc.start()
    try:
        result = hsds.import_path(str(path), hsds.Limits(max_file_bytes=1_000_000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    db.session.rollback()
    assert result.unreadable == ["huge.json"]
    assert "larger than 1000000 bytes" in str(result.problems[0])
    assert peak < 5_000_000, peak
    assert count(Organization) == 0


def test_a_symbolic_link_out_of_the_package_is_not_followed(app: Any, tmp_path: Any) -> None:
    folder = _tabular_copy(tmp_path)
    (folder / "services.csv").unlink()
    os.symlink("/etc/passwd", folder / "services.csv")
    err = _refused(run_import(app, str(folder)), folder)
    assert "services.csv: a symbolic link to a file outside the package folder: refused" in err
    assert "root:" not in err and "/bin/" not in err  # nothing of /etc/passwd
    # The same file behind a link that stays inside the package is read.
    (folder / "services.csv").unlink()
    (folder / "data").mkdir()
    with open(os.path.join(FIXTURES, "tabular", "services.csv"), "rb") as fh:
        (folder / "data" / "services.csv").write_bytes(fh.read())
    os.symlink(os.path.join("data", "services.csv"), folder / "services.csv")
    assert run_import(app, str(folder)).exit_code == 0
    assert count(Service) == 3

    # In a folder of JSON files, such a link is reported and the other files imported.
    json_folder = tmp_path / "json"
    json_folder.mkdir()
    (json_folder / "good.json").write_text(
        json.dumps([{"id": "o9", "name": "Linked Folder Org", "services": []}])
    )
    os.symlink("/etc/passwd", json_folder / "evil.json")
    result = run_import(app, str(json_folder))
    assert result.exit_code == 0, result.output
    err = errors_of(result)
    assert "evil.json: a symbolic link to a file outside the package folder: refused" in err
    assert "root:" not in err
    assert db.session.scalar(select(Organization).where(Organization.hsds_id == "o9"))


def test_a_file_the_descriptor_names_must_be_readable(app: Any, tmp_path: Any) -> None:
    folder = _tabular_copy(tmp_path)
    descriptor = json.loads((folder / "datapackage.json").read_text())
    for resource in descriptor["resources"]:
        if resource["name"] == "phones":
            resource["path"] = "contact/phones.csv"
    (folder / "datapackage.json").write_text(json.dumps(descriptor))
    err = _refused(run_import(app, str(folder)), folder)
    assert "contact/phones.csv: named in datapackage.json but missing" in err
    # A fifo (it would block a plain open) is not a regular file: refused at once.
    (folder / "contact").mkdir()
    os.mkfifo(folder / "contact" / "phones.csv")
    err = _refused(run_import(app, str(folder)), folder)
    assert "contact/phones.csv: not a regular file" in err


# --- fuzzing: whatever arrives, the importer reports and never raises --------------------


FUZZ = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
HSDS_KEYS = [
    "id", "name", "services", "organization", "organization_id", "phones", "number",
    "languages", "code", "schedules", "opens_at", "closes_at", "byday", "freq", "timezone",
    "timezone_name", "latitude", "longitude", "minimum_age", "maximum_age",
    "service_at_locations", "location", "service", "contents", "attributes", "taxonomy_term",
    "taxonomy_terms", "service_areas", "status", "description", "alternate_name",
    "accessibility", "details", "website", "locations", "location_type", "services.csv",
]
HSDS_TEXTS = [
    "+14155550123", "(415) 555-0199", "09:00", "24:00", "MO,TU,1FR", "en", "es-MX", "ara",
    "America/New_York", "Mars/Olympus", "5.5", "-8", "WEEKLY", "DAILY", "active", "defunct",
    "shelter", "legal aid", "o1", "s1", "", " ", "\x00", "Å" * 300, "NaN", "1e400",
]
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(HSDS_TEXTS)
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(HSDS_KEYS) | st.text(max_size=6), inner, max_size=7),
    max_leaves=30,
)


def _base_documents() -> list[Any]:
    """Real HSDS documents to mutate: our fixtures and the specification's examples."""
    found = []
    for folder, names in (
        (os.path.join(FIXTURES, "json"), ("organizations.json", "services.json")),
        (SHIPPED, ("organization_full.json", "service_full.json", "service_at_location_full.json")),
    ):
        for name in names:
            with open(os.path.join(folder, name), encoding="utf-8") as fh:
                found.append(json.load(fh))
    return found


BASE_DOCUMENTS = _base_documents()


@st.composite
def mutated_documents(draw: Any) -> Any:
    """A real HSDS document with a few fields replaced by values of any type (or removed):
    random values alone rarely get past "is this an organization?". Each mutation walks
    down from the top, stopping at each level with some chance, so the outer structure
    (an organization's "services") is hit as often as the leaves."""
    doc = copy.deepcopy(draw(st.sampled_from(BASE_DOCUMENTS)))
    for _ in range(draw(st.integers(1, 4))):
        node = doc
        while isinstance(node, dict | list) and node:
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            nesting = [k for k in keys if isinstance(node[k], dict | list)]
            key = draw(st.sampled_from(nesting if nesting and draw(st.booleans()) else keys))
            child = node[key]
            if isinstance(child, dict | list) and child and draw(st.integers(0, 2)) > 0:
                node = child
                continue
            if isinstance(node, dict) and draw(st.integers(0, 4)) == 0:
                del node[key]
            else:
                node[key] = draw(SCALARS | JSON_VALUES)
            break
    return doc


DOCUMENTS = mutated_documents() | JSON_VALUES


def _import_never_raises(path: str) -> None:
    """Anything but the documented refusal is a bug; each example leaves nothing behind."""
    from app.directory import hsds

    try:
        result = hsds.import_path(path, hsds.Limits(max_file_bytes=200_000, max_field_chars=200))
        for line in hsds.iter_problems(result):
            assert isinstance(line, str)
    except hsds.ImportFailed:
        pass
    finally:
        db.session.rollback()


@pytest.mark.both_databases
@FUZZ
@given(value=DOCUMENTS)
def test_fuzz_json_values_never_raise(app: Any, value: Any) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "fuzz.json")
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(value, fh)
        _import_never_raises(path)


@pytest.mark.both_databases
@FUZZ
@given(data=st.binary(max_size=400) | DOCUMENTS.map(lambda v: json.dumps(v).encode()[:-1]))
def test_fuzz_json_bytes_never_raise(app: Any, data: bytes) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "fuzz.json")
        with open(path, "wb") as fh:
            fh.write(data)
        _import_never_raises(path)


CSV_HEADERS = {
    "organizations.csv": ["id", "name", "description"],
    "services.csv": ["id", "organization_id", "name", "description", "status", "minimum_age"],
    "phones.csv": ["id", "service_id", "number"],
    "schedules.csv": ["id", "service_id", "opens_at", "closes_at", "byday", "timezone"],
    "service_at_location.csv": ["id", "service_id", "location_id"],
    "locations.csv": ["id", "latitude", "longitude"],
}
CSV_CELLS = (
    st.sampled_from(["o1", "s1", "l1", "", "\"", "a,b", "x\ny", "\r", *HSDS_TEXTS])
    | st.text(max_size=30)
)


@st.composite
def csv_files(draw: Any) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for name in draw(st.lists(st.sampled_from(sorted(CSV_HEADERS)), min_size=1, unique=True)):
        if draw(st.integers(0, 5)) == 0:
            files[name] = draw(st.binary(max_size=300))
            continue
        header = CSV_HEADERS[name]
        if draw(st.booleans()):
            header = draw(st.permutations(header + draw(st.lists(CSV_CELLS, max_size=2))))
        rows = draw(st.lists(st.lists(CSV_CELLS, max_size=len(header) + 2), max_size=6))
        quoted = draw(st.booleans())
        buffer = io.StringIO()
        if quoted:
            writer = csv.writer(buffer)
            writer.writerow(header)
            writer.writerows(rows)
        else:  # no quoting at all: stray quotes, commas and new lines as they come
            buffer.write("\n".join(",".join(row) for row in [header, *rows]))
        files[name] = buffer.getvalue().encode("utf-8", "surrogatepass")
    return files


@pytest.mark.both_databases
@FUZZ
@given(files=csv_files(), descriptor=st.none() | JSON_VALUES)
def test_fuzz_tabular_packages_never_raise(
    app: Any, files: dict[str, bytes], descriptor: Any
) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        for name, content in files.items():
            with open(os.path.join(folder, name), "wb") as fh:
                fh.write(content)
        if descriptor is not None:
            with open(os.path.join(folder, "datapackage.json"), "w", encoding="utf-8") as fh:
                json.dump(descriptor, fh)
        _import_never_raises(folder)
