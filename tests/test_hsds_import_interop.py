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
