"""HSDS import (issue 17): version detection, HSDS 3.1 capacity into bed counts through the
one capacity rule, category mapping through a table of taxonomy codes with the count of
services that fell to other, and the fields a caseworker reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from app.core.extensions import db
from app.models import Organization, Referral, Service
from tests import factories


def run_import(app: Any, path: Path) -> Any:
    result = app.test_cli_runner().invoke(args=["directory", "import-hsds", str(path)])
    db.session.expire_all()
    return result


def count(model: Any) -> int:
    return db.session.scalar(select(func.count()).select_from(model)) or 0


def write_csv(folder: Path, name: str, rows: list[str]) -> None:
    (folder / name).write_text("\n".join(rows) + "\n", encoding="utf-8")


def test_an_hsds_1_1_package_is_refused_with_a_clear_message(app: Any, tmp_path: Path) -> None:
    folder = tmp_path / "hsds11"
    folder.mkdir()
    write_csv(folder, "organizations.csv", ["id,name,description", "o1,Old Org,An org"])
    write_csv(folder, "services.csv", ["id,organization_id,name,status", "s1,o1,Old Desk,active"])
    write_csv(folder, "languages.csv", ["id,service_id,location_id,language", "l1,s1,,Spanish"])
    write_csv(
        folder,
        "regular_schedules.csv",
        ["id,service_id,location_id,service_at_location_id,weekday,opens_at,closes_at",
         "r1,s1,,,1,09:00,17:00"],
    )
    (folder / "datapackage.json").write_text(json.dumps({
        "name": "hsds", "resources": [
            {"name": n, "path": f"{n}.csv"}
            for n in ("organizations", "services", "languages", "regular_schedules")
        ],
    }))
    result = run_import(app, folder)
    assert result.exit_code == 1
    assert "HSDS 1.x or 2.x" in result.stderr
    assert "regular_schedules.csv" in result.stderr
    assert "unknown language code ''" not in result.stderr
    assert count(Service) == 0 and count(Organization) == 0


def test_a_declared_old_version_is_refused(app: Any, tmp_path: Path) -> None:
    folder = tmp_path / "hsds2"
    folder.mkdir()
    write_csv(folder, "organizations.csv", ["id,name,description", "o1,Old Org,An org"])
    (folder / "datapackage.json").write_text(json.dumps({
        "name": "hsds", "version": "2.0.1",
        "resources": [{"name": "organizations", "path": "organizations.csv"}],
    }))
    result = run_import(app, folder)
    assert result.exit_code == 1
    assert "version 2.0.1" in result.stderr and "HSDS 1.x or 2.x" in result.stderr


def feed(tmp_path: Path, services: list[dict[str, Any]]) -> Path:
    path = tmp_path / "feed.json"
    path.write_text(json.dumps([{
        "id": "11111111-0000-4000-8000-0000000000f1",
        "name": "Feed Org",
        "description": "Runs the harbour refuge.",
        "services": services,
    }]))
    return path


def beds(available: int, maximum: int) -> list[dict[str, Any]]:
    return [{
        "id": "cap-1",
        "available": available,
        "maximum": maximum,
        "unit": {"id": "unit-bed", "name": "Bed", "identifier": "bed"},
    }]


REFUGE = {
    "id": "22222222-0000-4000-8000-0000000000f1",
    "name": "Harbour Refuge",
    "status": "active",
    "taxonomy_terms": [{"id": "t1", "code": "BH-1800", "name": "Emergency Shelter"}],
    "eligibility_description": "Women over 18 and their children.",
    "url": "https://refuge.example.org/",
    "email": "intake@refuge.example.org",
}


def test_hsds_3_1_capacity_becomes_the_bed_counts(app: Any, tmp_path: Path) -> None:
    result = run_import(app, feed(tmp_path, [dict(REFUGE, capacities=beds(3, 10))]))
    assert result.exit_code == 0, result.output
    refuge = db.session.scalar(select(Service).where(Service.name == "Harbour Refuge"))
    assert refuge is not None
    assert (refuge.category, refuge.beds_total, refuge.beds_available) == ("shelter", 10, 3)
    assert refuge.eligibility_description == "Women over 18 and their children."
    assert (refuge.url, refuge.email) == ("https://refuge.example.org/",
                                          "intake@refuge.example.org")
    assert refuge.organization.description == "Runs the harbour refuge."


def test_a_feed_count_that_conflicts_with_holds_is_reported_and_not_written(
    app: Any, tmp_path: Path
) -> None:
    assert run_import(app, feed(tmp_path, [dict(REFUGE, capacities=beds(3, 10))])).exit_code == 0
    refuge = db.session.scalar(select(Service).where(Service.name == "Harbour Refuge"))
    for _ in range(2):
        factories.make_referral(service=refuge, hold_status="held")
    refuge.beds_available = 1  # two of the three free beds are now held
    db.session.commit()
    assert count(Referral) == 2
    result = run_import(app, feed(tmp_path, [dict(REFUGE, capacities=beds(9, 10))]))
    assert result.exit_code == 0, result.output
    assert "conflicts with the 2 beds held for referrals" in result.stderr
    assert (refuge.beds_total, refuge.beds_available) == (10, 1)


def test_taxonomy_codes_map_to_categories_and_other_is_counted(
    app: Any, tmp_path: Path
) -> None:
    def service(n: int, code: str, name: str) -> dict[str, Any]:
        return {
            "id": f"33333333-0000-4000-8000-00000000000{n}",
            "name": f"Service {n}",
            "status": "active",
            "attributes": [{"id": f"a{n}", "taxonomy_term": {"id": f"t{n}", "code": code,
                                                            "name": name}}],
        }

    result = run_import(app, feed(tmp_path, [
        service(1, "BH-1800.1500", "Domestic Violence Programs"),
        service(2, "FT-3200", "Representation"),
        service(3, "LN-1500", "Outpatient Care"),
        service(4, "RP-1400", "Counseling Services"),
        service(5, "BD-1800", "Food Pantries"),
        service(6, "shelter:es", "Alojamiento"),  # Haven's own taxonomy, translated
    ]))
    assert result.exit_code == 0, result.output
    found = {
        s.name: s.category for s in db.session.scalars(select(Service))
    }
    assert found == {
        "Service 1": "shelter", "Service 2": "legal", "Service 3": "medical",
        "Service 4": "psychosocial", "Service 5": "other", "Service 6": "shelter",
    }
    assert "services in other: 1 of 6" in result.output


# --- HSDS 3.1 capacity in the tabular package ---------------------------------------------

BED_UNIT = "44444444-0000-4000-8000-0000000000b1"


def tabular_refuge(tmp_path: Path, available: int, maximum: int, unit_id: str = BED_UNIT) -> Path:
    folder = tmp_path / "hsds31"
    folder.mkdir(exist_ok=True)
    write_csv(folder, "organizations.csv", ["id,name,description", "o1,Feed Org,Runs a refuge"])
    write_csv(
        folder, "services.csv", ["id,organization_id,name,status", "s1,o1,Harbour Refuge,active"]
    )
    write_csv(
        folder,
        "service_capacity.csv",
        ["id,service_id,unit_id,available,maximum,description,updated",
         f"c1,s1,{unit_id},{available},{maximum},Beds,2026-12-01T10:00:00Z"],
    )
    write_csv(folder, "unit.csv", ["id,name,scheme,identifier,uri", f"{BED_UNIT},Bed,,bed,"])
    (folder / "datapackage.json").write_text(json.dumps({
        "name": "hsds", "version": "3.1",
        "resources": [
            {"name": n, "path": f"{n}.csv"}
            for n in ("organizations", "services", "service_capacity", "unit")
        ],
    }))
    return folder


def test_tabular_hsds_3_1_capacity_becomes_the_bed_counts(app: Any, tmp_path: Path) -> None:
    result = run_import(app, tabular_refuge(tmp_path, 4, 12))
    assert result.exit_code == 0, result.output
    refuge = db.session.scalar(select(Service).where(Service.hsds_id == "s1"))
    assert refuge is not None
    assert (refuge.category, refuge.beds_total, refuge.beds_available) == ("shelter", 12, 4)


def test_tabular_capacity_that_conflicts_with_holds_is_reported_and_not_written(
    app: Any, tmp_path: Path
) -> None:
    assert run_import(app, tabular_refuge(tmp_path, 4, 12)).exit_code == 0
    refuge = db.session.scalar(select(Service).where(Service.hsds_id == "s1"))
    for _ in range(3):
        factories.make_referral(service=refuge, hold_status="held")
    refuge.beds_available = 1
    db.session.commit()
    result = run_import(app, tabular_refuge(tmp_path, 10, 12))
    assert result.exit_code == 0, result.output
    assert "service_capacity.csv, row 2: service s1: the feed's beds (10 free of 12) conflicts " \
        "with the 3 beds held for referrals" in result.stderr
    assert (refuge.beds_total, refuge.beds_available) == (12, 1)


def test_tabular_capacity_with_an_unknown_unit_is_reported(app: Any, tmp_path: Path) -> None:
    result = run_import(app, tabular_refuge(tmp_path, 4, 12, unit_id="no-such-unit"))
    assert result.exit_code == 0, result.output
    assert "service_capacity.csv, row 2: unit no-such-unit is not in unit.csv: ignored" in (
        result.stderr
    )
    refuge = db.session.scalar(select(Service).where(Service.hsds_id == "s1"))
    assert refuge is not None and refuge.beds_total is None


# --- version detection in JSON feeds --------------------------------------------------------


def write_json(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    return path


def assert_refused(result: Any, *signs: str) -> None:
    assert result.exit_code == 1, result.output
    assert "HSDS 1.x or 2.x" in result.stderr
    for sign in signs:
        assert sign in result.stderr, sign
    assert "unknown language code ''" not in result.stderr
    assert count(Service) == 0 and count(Organization) == 0


def test_an_hsds_1_x_json_organization_is_refused(app: Any, tmp_path: Path) -> None:
    old = {
        "id": "o1", "name": "Old Org", "description": "An org",
        "services": [{"id": "s1", "name": "Old Desk", "status": "active",
                      "languages": [{"id": "l1", "language": "Spanish"}]}],
        "locations": [{
            "id": "loc1", "name": "Main office",
            "physical_address": {"address_1": "1 Main St", "city": "Town"},
            "phones": [{"id": "p1", "number": "+14155550123", "language": "English"}],
        }],
    }
    result = run_import(app, write_json(tmp_path, [old]))
    assert_refused(result, "old.json", "physical_address", "'language'")


def test_an_hsds_2_x_json_service_is_refused(app: Any, tmp_path: Path) -> None:
    old = {
        "id": "s1", "organization_id": "o1", "name": "Old Desk", "status": "active",
        "regular_schedule": [{"weekday": 1, "opens_at": "09:00", "closes_at": "17:00"}],
        "languages": ["Spanish"],
    }
    result = run_import(app, write_json(tmp_path, {"contents": [old]}))
    assert_refused(result, "regular_schedule")


def test_a_json_feed_declaring_an_old_version_is_refused(app: Any, tmp_path: Path) -> None:
    doc = {"version": "2.0.1", "contents": [{
        "id": "o1", "name": "Org", "website": "https://org.example.org/", "services": [],
    }]}
    result = run_import(app, write_json(tmp_path, doc))
    assert_refused(result, "declares version 2.0.1")


def test_a_taxonomy_version_is_not_an_hsds_version(app: Any, tmp_path: Path) -> None:
    term = {"id": "t1", "code": "BH-1800", "name": "Shelter",
            "taxonomy_detail": {"id": "x1", "name": "AIRS", "version": "2.0"}}
    result = run_import(app, feed(tmp_path, [dict(REFUGE, taxonomy_terms=[term])]))
    assert result.exit_code == 0, result.output
    assert count(Service) == 1


def test_a_3_2_units_csv_is_read_when_unit_csv_is_absent(app: Any, tmp_path: Path) -> None:
    folder = tabular_refuge(tmp_path, 2, 6)
    (folder / "unit.csv").rename(folder / "units.csv")
    (folder / "datapackage.json").unlink()
    result = run_import(app, folder)
    assert result.exit_code == 0, result.output
    refuge = db.session.scalar(select(Service).where(Service.hsds_id == "s1"))
    assert refuge is not None and (refuge.beds_total, refuge.beds_available) == (6, 2)


def test_an_old_file_in_a_folder_of_json_refuses_the_whole_import(
    app: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "feeds"
    folder.mkdir()
    feed(folder, [dict(REFUGE)])  # a good 3.0 file, feed.json
    (folder / "old.json").write_text(json.dumps([{
        "id": "s9", "organization_id": "o9", "name": "Old", "holiday_schedule": [],
    }]))
    result = run_import(app, folder)
    assert_refused(result, "old.json", "'holiday_schedule'")
