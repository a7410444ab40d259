"""The directory as Open Referral HSDS 3.0 (issue 17): one mapping from Haven's rows to HSDS
objects, used by ``flask directory export-hsds`` (JSON and tabular) and by the HSDS API.

What is published is decided here, once:

* organizations of kind ``provider`` and every organization that offers a service, each with
  its ``description`` (HSDS requires one) and its services nested;
* Haven's categories as a taxonomy (``haven-categories``) whose terms carry a name and a
  description in every interface language (``LANGUAGES``); a service links to the English
  term through an attribute;
* exact ages, languages, service areas, accessibility, weekly hours: ``timezone`` is the
  standard's numeric UTC offset (of the zone at export time) and, because an offset cannot
  say when daylight saving starts, the IANA zone travels as a schedule attribute of the term
  ``iana_timezone`` that the importer reads back;
* **never**: intake phones (they receive referral codes; no phone is exported at all),
  anything about cases or referrals, and for a service whose location is confidential its
  coordinates or address. Such a service keeps a location without a place (its
  accessibility) so a reader still knows about step-free access.

The functions read and never write; the CLI and the API own their transactions.
"""

from __future__ import annotations

import csv
import json
import os
import re
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from flask_babel import force_locale
from flask_babel import lazy_gettext as _l
from sqlalchemy import or_, select
from sqlalchemy.orm import defer, load_only, selectinload

from app.core import vocab
from app.core.extensions import db
from app.directory.hsds import HSDS_NAMESPACE, TIMEZONE_TERM_CODE, TIMEZONE_TERM_ID
from app.models.accounts import Organization
from app.models.directory import Service, zone

HSDS_VERSION = "3.0"
TAXONOMY_NAME = "haven-categories"
WEEKDAY_CODES = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
DATAPACKAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hsds_datapackage.json")

CATEGORY_DESCRIPTIONS = {
    "shelter": _l("Safe accommodation: emergency, short-term or longer-term beds."),
    "legal": _l("Legal advice and representation: immigration, protection orders, labour rights."),
    "medical": _l("Medical care: examinations, treatment, sexual and reproductive health."),
    "psychosocial": _l("Counselling, trauma support, peer and group support."),
    "other": _l("Other practical support: food, clothing, transport, work, education."),
}


def _uid(kind: str) -> str:
    return str(uuid.uuid5(HSDS_NAMESPACE, kind))


TAXONOMY_ID = _uid("taxonomy-haven-categories")


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def is_uuid(text: str) -> bool:
    """The canonical hyphenated form (what the JSON Schema ``uuid`` format accepts)."""
    return _UUID.fullmatch(text) is not None


def published_id(kind: str, row_id: int, stored: str | None) -> str:
    """The id HSDS 3.0 readers get: the stored HSDS id when it is a UUID (as the standard
    requires), else a UUID derived from it (a feed's "org-7") or from the row."""
    if stored and is_uuid(stored):
        return stored
    return _uid(f"{kind}-hsds:{stored}") if stored else _uid(f"{kind}-{row_id}")


def org_hsds_id(org: Organization) -> str:
    return published_id("organization", org.id, org.hsds_id)


def service_hsds_id(service: Service) -> str:
    return hsds_id_of(service.id, service.hsds_id)


def hsds_id_of(service_id: int, hsds_id: str | None) -> str:
    return published_id("service", service_id, hsds_id)


def sal_id(sid: str) -> str:
    """The id of a service's (one) service_at_location, derived from the service's id."""
    return _uid(f"sal-{sid}")


def last_modified(service: Service) -> str:
    return service.updated_at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def category_term_id(category: str, language: str = "en") -> str:
    # English keeps the id earlier exports gave the term.
    return _uid(f"term-{category}" if language == "en" else f"term-{category}-{language}")


def taxonomy(languages: Sequence[str]) -> dict[str, Any]:
    return {
        "id": TAXONOMY_ID,
        "name": TAXONOMY_NAME,
        "description": "Haven service categories (" + ", ".join(languages) + ")",
        "version": "1",
    }


def category_term(category: str, language: str) -> dict[str, Any]:
    """The term of one category in one language (name and description translated; the
    export is not in a request, so the locale is set here)."""
    with force_locale(language):
        return {
            "id": category_term_id(category, language),
            # Codes are unique across a taxonomy's terms: the English term carries the
            # category's key, its translations the key and their language.
            "code": category if language == "en" else f"{category}:{language}",
            "name": str(vocab.CATEGORY_LABELS[category]),
            "description": str(CATEGORY_DESCRIPTIONS[category]),
            "taxonomy": TAXONOMY_NAME,
            "taxonomy_id": TAXONOMY_ID,
            "language": language,
        }


def category_terms(languages: Sequence[str]) -> list[dict[str, Any]]:
    """One term per category and interface language."""
    return [category_term(c, lang) for lang in languages for c in vocab.SERVICE_CATEGORIES]


def timezone_term() -> dict[str, Any]:
    return {
        "id": TIMEZONE_TERM_ID,
        "code": TIMEZONE_TERM_CODE,
        "name": "IANA time zone",
        "description": "The schedule's times are local times of the IANA time zone given as "
        "the attribute's value (daylight saving included).",
        "taxonomy": "haven",
    }


def utc_offset_hours(tz_name: str, when: datetime | None = None) -> float:
    offset = (when or datetime.now(UTC)).astimezone(zone(tz_name)).utcoffset()
    hours = offset.total_seconds() / 3600 if offset is not None else 0.0
    return int(hours) if hours.is_integer() else hours


def _schedules(service: Service, sid: str) -> list[dict[str, Any]]:
    by_time: dict[tuple[str, str], list[int]] = {}
    for weekday, opens, closes in service.hours or []:
        by_time.setdefault((opens, closes), []).append(int(weekday))
    tz = service.timezone or "UTC"
    out = []
    for (opens, closes), days in sorted(by_time.items()):
        schedule_id = _uid(f"schedule-{sid}-{opens}-{closes}")
        out.append(
            {
                "id": schedule_id,
                "service_id": sid,
                "freq": "WEEKLY",
                "byday": ",".join(WEEKDAY_CODES[d] for d in sorted(days)),
                "opens_at": opens,
                "closes_at": closes,
                "timezone": utc_offset_hours(tz),
                "attributes": [
                    {
                        "id": _uid(f"attribute-tz-{schedule_id}"),
                        "link_id": schedule_id,
                        "link_type": "timezone",
                        "link_entity": "schedule",
                        "taxonomy_term_id": TIMEZONE_TERM_ID,
                        "value": tz,
                        "taxonomy_term": timezone_term(),
                    }
                ],
            }
        )
    return out


def _location(service: Service, sid: str) -> dict[str, Any]:
    location: dict[str, Any] = {"id": _uid(f"location-{sid}"), "location_type": "physical"}
    if service.location_confidential:
        # The place is secret: no name of it, no coordinates, no address.
        location["description"] = "Confidential location: given to a referred person only."
    else:
        location["name"] = service.name
        if service.latitude is not None and service.longitude is not None:
            location["latitude"], location["longitude"] = service.latitude, service.longitude
    access = []
    if service.wheelchair_access:
        access.append("Wheelchair access.")
    if service.hearing_access:
        access.append("Induction loop for hearing aids.")
    if access:
        location["accessibility"] = [
            {
                "id": _uid(f"access-{sid}"),
                "location_id": location["id"],
                "description": " ".join(access),
            }
        ]
    return location


def service_fields(service: Service) -> dict[str, Any]:
    """A service's one-to-one fields (the API's list items)."""
    out: dict[str, Any] = {
        "id": service_hsds_id(service),
        "organization_id": org_hsds_id(service.organization),
        "name": service.name,
        "description": service.description or "",
        "status": "active" if service.active else "inactive",
        "last_modified": last_modified(service),
    }
    if service.eligibility_description:
        out["eligibility_description"] = service.eligibility_description
    if service.url:
        out["url"] = service.url
    if service.email:
        out["email"] = service.email
    if service.min_age is not None:
        out["minimum_age"] = service.min_age
    if service.max_age is not None:
        out["maximum_age"] = service.max_age
    return out


def service_to_hsds(service: Service) -> dict[str, Any]:
    """One service as a fully nested HSDS 3.0 service (without its organization). The only
    place that decides what of a service is published."""
    out = service_fields(service)
    sid = out["id"]
    term = category_term(service.category, "en")
    out["attributes"] = [
        {
            "id": _uid(f"attribute-{sid}"),
            "link_id": sid,
            "link_type": "category",
            "link_entity": "service",
            "taxonomy_term_id": term["id"],
            "value": service.category,
            "taxonomy_term": term,
        }
    ]
    out["languages"] = [
        {
            "id": _uid(f"language-{sid}-{c}"),
            "service_id": sid,
            "code": c,
            "name": vocab.SURVIVOR_LANGUAGE_LABELS[c],
        }
        for c in service.language_list
    ]
    out["service_areas"] = [
        {"id": _uid(f"area-{sid}-{a.id}"), "service_id": sid, "name": a.name}
        for a in service.areas
    ]
    out["schedules"] = _schedules(service, sid)
    location = _location(service, sid)
    out["service_at_locations"] = [
        {
            "id": sal_id(sid),
            "service_id": sid,
            "location_id": location["id"],
            "location": location,
        }
    ]
    return out


def organization_to_hsds(org: Organization, services: Iterable[Service]) -> dict[str, Any]:
    return {
        "id": org_hsds_id(org),
        "name": org.name,
        # HSDS requires a description; an organization without one is described by its name.
        "description": org.description or org.name,
        "services": [service_to_hsds(s) for s in services],
    }


# What ``service_fields`` reads (the API's list pages load only these).
LIST_COLUMNS = (
    Service.id,
    Service.hsds_id,
    Service.organization_id,
    Service.name,
    Service.description,
    Service.active,
    Service.updated_at,
    Service.eligibility_description,
    Service.url,
    Service.email,
    Service.min_age,
    Service.max_age,
)


def list_options() -> list[Any]:
    return [
        load_only(*LIST_COLUMNS, raiseload=True),
        selectinload(Service.organization).load_only(
            Organization.id, Organization.hsds_id, raiseload=True
        ),
    ]


def full_options() -> list[Any]:
    return [
        defer(Service.intake_phone, raiseload=True),
        defer(Service.intake_phone_index, raiseload=True),
        selectinload(Service.organization),
        selectinload(Service.areas),
    ]


def services_query(public_only: bool) -> Any:
    """Services with what ``service_to_hsds`` reads loaded in a fixed number of queries."""
    # The intake phone is never even read (trying to would raise, not leak).
    query = select(Service).options(*full_options())
    if public_only:
        query = query.where(Service.active.is_(True))
    return query


def export_organizations() -> list[dict[str, Any]]:
    """Every provider organization (with or without services) and every organization that
    offers a service, as HSDS organizations with nested services."""
    services = db.session.scalars(
        services_query(public_only=False).order_by(Service.organization_id, Service.id)
    ).all()
    by_org: dict[int, list[Service]] = {}
    for s in services:
        by_org.setdefault(s.organization_id, []).append(s)
    orgs = db.session.scalars(
        select(Organization)
        .where(or_(Organization.kind == "provider", Organization.id.in_(list(by_org))))
        .order_by(Organization.id)
    ).all()
    return [organization_to_hsds(org, by_org.get(org.id, [])) for org in orgs]


# --- tabular --------------------------------------------------------------------------------


def _descriptor() -> dict[str, Any]:
    with open(DATAPACKAGE, encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _clock(text: str) -> str:
    """HH:MM as the tabular ``time`` type (HH:MM:SS). 24:00 is no time of day: midnight,
    which Haven reads the same way (a span closing at or before it opens runs past midnight)."""
    return "00:00:00" if text == "24:00" else f"{text}:00"


def tabular_rows(
    organizations: list[dict[str, Any]], languages: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    """The HSDS tables (resource name -> rows) of nested organizations."""
    tables: dict[str, list[dict[str, Any]]] = {}

    def add(name: str, row: dict[str, Any]) -> None:
        tables.setdefault(name, []).append(row)

    tables["taxonomy"] = [taxonomy(languages)]
    tables["taxonomy_term"] = [*category_terms(languages), timezone_term()]
    for org in organizations:
        add("organization", {k: v for k, v in org.items() if k != "services"})
        for service in org["services"]:
            add("service", {k: v for k, v in service.items() if not isinstance(v, list)})
            for attr in service["attributes"]:
                add("attribute", {k: v for k, v in attr.items() if k != "taxonomy_term"})
            for language in service["languages"]:
                add("language", language)
            for area in service["service_areas"]:
                add("service_area", area)
            for schedule in service["schedules"]:
                row = {k: v for k, v in schedule.items() if k != "attributes"}
                row["opens_at"], row["closes_at"] = _clock(row["opens_at"]), _clock(
                    row["closes_at"]
                )
                add("schedule", row)
                for attr in schedule["attributes"]:
                    add("attribute", {k: v for k, v in attr.items() if k != "taxonomy_term"})
            for sal in service["service_at_locations"]:
                location = sal["location"]
                add("service_at_location", {k: v for k, v in sal.items() if k != "location"})
                add("location", {k: v for k, v in location.items() if k != "accessibility"})
                for access in location.get("accessibility", []):
                    add("accessibility", access)
    return tables


def write_tabular(
    folder: str, organizations: list[dict[str, Any]], languages: Sequence[str]
) -> None:
    """A tabular data package in ``folder``: every resource of the HSDS 3.0 descriptor as a
    CSV file with exactly its fields (header only when Haven has no rows for it), and the
    descriptor itself."""
    descriptor = _descriptor()
    tables = tabular_rows(organizations, languages)
    os.makedirs(folder, exist_ok=True)
    for resource in descriptor["resources"]:
        fields = [f["name"] for f in resource["schema"]["fields"]]
        target = os.path.join(folder, resource["path"])
        with open(target + ".tmp", "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(fields)
            for row in tables.get(resource["name"], []):
                writer.writerow([_csv_value(row.get(f)) for f in fields])
        os.replace(target + ".tmp", target)
    with open(os.path.join(folder, "datapackage.json.tmp"), "w", encoding="utf-8") as fh:
        json.dump(descriptor, fh, ensure_ascii=False, indent=2)
        fh.write("\n")
    os.replace(
        os.path.join(folder, "datapackage.json.tmp"), os.path.join(folder, "datapackage.json")
    )


def write_json(target: str, organizations: list[dict[str, Any]]) -> None:
    with open(target + ".tmp", "w", encoding="utf-8") as fh:
        json.dump(organizations, fh, ensure_ascii=False, indent=2)
        fh.write("\n")
    os.replace(target + ".tmp", target)


def export_summary(organizations: list[dict[str, Any]]) -> tuple[int, int]:
    return len(organizations), sum(len(o["services"]) for o in organizations)

