"""Demo directory rows for `flask seed-demo` (added to the session, never committed here)."""

from __future__ import annotations

from app.core.discretion import clean_sms_label
from app.core.extensions import db
from app.models import Area, Organization, Service

DEMO_AREAS = [
    # name, parent, latitude, longitude
    ("Riverside County", None, 33.95, -117.40),
    ("Riverside", "Riverside County", 33.98, -117.37),
    ("Moreno Valley", "Riverside County", 33.94, -117.23),
    ("Northside", None, 34.10, -117.29),
]
WEEKDAYS_9_TO_5 = [[d, "09:00", "17:00"] for d in range(5)]
ALWAYS = [[d, "00:00", "24:00"] for d in range(7)]


def seed_directory(orgs: dict[str, Organization]) -> None:
    areas: dict[str, Area] = {}
    for name, parent, lat, lon in DEMO_AREAS:
        area = Area(
            name=name, parent=areas.get(parent) if parent else None, latitude=lat, longitude=lon,
            sms_label=clean_sms_label(name),  # as an admin would approve them
            # Top-level areas carry the zone; their parts use it (survivors' safe hours).
            timezone=None if parent else "America/Los_Angeles",
        )
        db.session.add(area)
        areas[name] = area
    db.session.flush()
    rows = []
    if "Riverside Shelter" in orgs:
        rows.append(
            Service(
                organization=orgs["Riverside Shelter"],
                name="Riverside Emergency Shelter",
                description="Confidential emergency shelter for women and their children.",
                category="shelter",
                location_confidential=True,  # a refuge's address is secret
                languages="en,es,ar",
                latitude=33.98,
                longitude=-117.37,
                gender_mask=0b1,
                accepts_children=True,
                wheelchair_access=True,
                hours=ALWAYS,
                timezone="America/Los_Angeles",
                beds_total=12,
                beds_available=2,
                areas=[areas["Riverside County"]],
            )
        )
        rows[-1].genders = ["female", "nonbinary"]
    if "Justice Legal Aid" in orgs:
        rows.append(
            Service(
                organization=orgs["Justice Legal Aid"],
                name="Immigration and Protection Orders",
                description="Free legal advice: T-visas, U-visas, protection orders.",
                category="legal",
                languages="en,es,fr",
                latitude=33.95,
                longitude=-117.39,
                hours=WEEKDAYS_9_TO_5,
                timezone="America/Los_Angeles",
                hearing_access=True,
                areas=[areas["Riverside County"], areas["Northside"]],
            )
        )
    if "Community Health Clinic" in orgs:
        rows.append(
            Service(
                organization=orgs["Community Health Clinic"],
                name="Walk-in Clinic",
                description="Medical care, sexual health and forensic exams.",
                category="medical",
                languages="en,ar,uk",
                latitude=33.94,
                longitude=-117.23,
                hours=[*WEEKDAYS_9_TO_5, [5, "10:00", "14:00"]],
                timezone="America/Los_Angeles",
                wheelchair_access=True,
                areas=[areas["Moreno Valley"]],
            )
        )
        rows.append(
            Service(
                organization=orgs["Community Health Clinic"],
                name="Trauma Counselling",
                description="Individual and group counselling with interpreters.",
                category="psychosocial",
                languages="en,es,ar,uk",
                latitude=33.94,
                longitude=-117.23,
                hours=WEEKDAYS_9_TO_5,
                timezone="America/Los_Angeles",
                areas=[areas["Riverside County"]],
            )
        )
    db.session.add_all(rows)
    db.session.flush()
