"""HSDS 3.0 export (issue 17): JSON valid against the specification's compiled
organization_package.json, tabular valid with frictionless against the specification's own
datapackage.json, taxonomy in every interface language, and what is never published."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import frictionless
import jsonschema

from app.core.extensions import db
from app.models import Area
from tests import factories
from tests.hsds_shared import load, shared_file

SECRET_LAT, SECRET_LON = 34.0123456, -118.6543210
ALIAS = "Zorabelle"


def directory() -> dict[str, Any]:
    """A directory with every kind of thing the export must handle (and must hide)."""
    area = Area(name="Old Town")
    refuge_org = factories.make_org("provider", name="Refuge Org", description="A refuge.")
    refuge = factories.make_service(
        refuge_org,
        category="shelter",
        name="Secret Refuge",
        intake_phone="+14155550199",
        latitude=SECRET_LAT,
        longitude=SECRET_LON,
        location_confidential=True,
        wheelchair_access=True,
        beds_total=5,
        beds_available=2,
        areas=[area],
    )
    clinic = factories.make_service(
        factories.make_org("provider", name="Clinic Org"),
        category="medical",
        name="Open Clinic",
        languages="ar,en",
        latitude=1.5,
        longitude=2.5,
        min_age=16,
        max_age=64,
        hours=[[0, "09:00", "17:00"], [1, "09:00", "17:00"], [5, "22:00", "24:00"]],
        timezone="Europe/Paris",
        eligibility_description="Anyone over 16 without a doctor.",
        url="https://clinic.example.org/",
        email="desk@clinic.example.org",
        hearing_access=True,
    )
    lonely = factories.make_org("provider", name="Provider Without Services")
    case = factories.make_case(alias=ALIAS)
    factories.make_referral(case, refuge)
    db.session.commit()
    return {"refuge": refuge, "clinic": clinic, "lonely": lonely}


def export(app: Any, path: Path, *args: str) -> Any:
    result = app.test_cli_runner().invoke(args=["directory", "export-hsds", *args, str(path)])
    assert result.exit_code == 0, result.output
    return result


def test_json_export_is_valid_hsds_3(app: Any, tmp_path: Path) -> None:
    directory()
    target = tmp_path / "directory.json"
    out = export(app, target)
    assert "(json)" in out.output
    data = json.loads(target.read_text())
    schema = load("schema/compiled/organization_package.json")
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(data)]
    assert errors == []
    by_name = {o["name"]: o for o in data}
    # Organizations without services are published too, with the description HSDS requires.
    assert by_name["Provider Without Services"]["services"] == []
    assert by_name["Refuge Org"]["description"] == "A refuge."
    clinic = by_name["Clinic Org"]["services"][0]
    assert (clinic["minimum_age"], clinic["maximum_age"]) == (16, 64)
    assert clinic["eligibility_description"] == "Anyone over 16 without a doctor."
    assert clinic["url"] == "https://clinic.example.org/"
    assert {lang["code"] for lang in clinic["languages"]} == {"ar", "en"}
    term = clinic["attributes"][0]["taxonomy_term"]
    assert term["code"] == "medical" and term["description"]
    monday = next(s for s in clinic["schedules"] if s["byday"] == "MO,TU")
    assert (monday["opens_at"], monday["closes_at"]) == ("09:00", "17:00")
    assert monday["timezone"] in (1, 2)  # Paris, winter or summer
    assert monday["attributes"][0]["value"] == "Europe/Paris"
    location = clinic["service_at_locations"][0]["location"]
    assert (location["latitude"], location["longitude"]) == (1.5, 2.5)
    assert "Induction loop" in location["accessibility"][0]["description"]


def test_never_exported_intake_phones_cases_or_confidential_places(
    app: Any, tmp_path: Path
) -> None:
    directory()
    export(app, tmp_path / "d.json")
    export(app, tmp_path / "tabular", "--format", "tabular")
    texts = [(tmp_path / "d.json").read_text()] + [
        p.read_text() for p in (tmp_path / "tabular").glob("*.csv")
    ]
    for text in texts:
        assert "4155550199" not in text  # the intake phone
        assert ALIAS not in text  # a case's alias
        assert "34.01" not in text and "118.65" not in text  # the refuge's coordinates
    data = json.loads(texts[0])
    refuge = next(o for o in data if o["name"] == "Refuge Org")["services"][0]
    location = refuge["service_at_locations"][0]["location"]
    assert "latitude" not in location and "addresses" not in location and "name" not in location
    # What is not secret about the place stays: step-free access.
    assert "Wheelchair" in location["accessibility"][0]["description"]


def test_tabular_export_is_valid_against_the_real_datapackage(app: Any, tmp_path: Path) -> None:
    directory()
    folder = tmp_path / "out"
    out = export(app, folder, "--format", "tabular")
    assert "(tabular)" in out.output
    # The descriptor written is the specification's own, byte for byte in content...
    official = shared_file("examples/csv/datapackage.json")
    assert json.loads((folder / "datapackage.json").read_text()) == json.loads(
        official.read_text()
    )
    # ... and the CSV files are judged against the official file itself.
    shutil.copyfile(official, folder / "datapackage.json")
    report = frictionless.validate(str(folder / "datapackage.json"))
    problems = [
        f"{task.name}: {error.message}" for task in report.tasks for error in task.errors
    ] + [error.message for error in report.errors]
    assert report.valid, "\n".join(problems[:20])
    terms = list(frictionless.Resource(str(folder / "taxonomy_terms.csv")).read_rows())
    categories = [t for t in terms if t["taxonomy"] == "haven-categories"]
    # Five categories in each of the four interface languages, each with a description.
    assert {t["language"] for t in categories} == set(app.config["LANGUAGES"])
    assert len(categories) == 5 * len(app.config["LANGUAGES"])
    assert all(t["description"] for t in categories)
    orgs = {r["name"] for r in frictionless.Resource(str(folder / "organizations.csv")).read_rows()}
    assert "Provider Without Services" in orgs


def test_export_reimports_as_it_was(app: Any, tmp_path: Path) -> None:
    made = directory()
    clinic = made["clinic"]
    before = (clinic.hours, clinic.timezone, clinic.min_age, clinic.max_age, clinic.url,
              clinic.email, clinic.eligibility_description)
    target = tmp_path / "d.json"
    export(app, target)
    clinic.hours, clinic.timezone, clinic.url, clinic.eligibility_description = [], "UTC", None, ""
    db.session.commit()
    result = app.test_cli_runner().invoke(args=["directory", "import-hsds", str(target)])
    assert result.exit_code == 0, result.output
    db.session.expire_all()
    after = (clinic.hours, clinic.timezone, clinic.min_age, clinic.max_age, clinic.url,
             clinic.email, clinic.eligibility_description)
    assert after == before
    # The confidential refuge's stored place is kept: the export withheld it, not erased it.
    refuge = made["refuge"]
    assert (refuge.latitude, refuge.longitude) == (SECRET_LAT, SECRET_LON)
    assert refuge.location_confidential


def test_tabular_export_reimports_the_time_zone(app: Any, tmp_path: Path) -> None:
    clinic = directory()["clinic"]
    export(app, tmp_path / "tab", "--format", "tabular")
    clinic.hours, clinic.timezone = [], "UTC"
    db.session.commit()
    result = app.test_cli_runner().invoke(
        args=["directory", "import-hsds", str(tmp_path / "tab")]
    )
    assert result.exit_code == 0, result.output
    db.session.expire_all()
    assert clinic.timezone == "Europe/Paris"
    assert [0, "09:00", "17:00"] in clinic.hours
    assert "numeric timezone offset" not in result.stderr
