"""Open Referral HSDS 3.0 import and export for the service directory (issue 4).

Import reads
* JSON: a file or a folder of ``*.json`` files holding organization objects (with nested
  ``services``), service objects (with nested ``organization``, ``service_at_locations``,
  ``phones``, ``languages``, ``schedules``, ``service_areas``), ``service_at_location``
  objects, paginated lists (``{"contents": [...]}``) or plain lists of those;
* the tabular data package: a folder with ``datapackage.json`` and the HSDS CSV files
  (``organizations.csv``, ``services.csv``, ``phones.csv``, ``languages.csv``,
  ``schedules.csv``, ``service_areas.csv``, ``service_at_location.csv``, ``locations.csv``,
  ``accessibility.csv``, ``attributes.csv``, ``taxonomy_terms.csv``).

Real directories are messy: every bad row or field becomes a ``Problem`` naming the file,
the row (1-based object index for JSON, CSV line number for tables) and the reason; a bad
row is skipped, a bad field is dropped (or normalised when that is safe) and the rest of the
row imported. Re-import updates by HSDS id and never duplicates. Fields HSDS does not carry
(bed capacity, gender eligibility, ...) are left as they are on update.

Intake phones are never imported nor exported: the intake phone is the number Haven trusts
(it receives referral codes and may answer ACCEPT, DECLINE and BEDS), set only by an admin or
the provider on the service form. A feed's phone that is not the intake phone is reported.

The functions here add to the session and never commit: the CLI owns the transaction, so a
failure half-way leaves the database unchanged.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from flask import current_app
from sqlalchemy import func, select

from app import audit, vocab
from app.crypto import InvalidPhoneNumber, normalize_phone
from app.extensions import db
from app.models.accounts import Organization
from app.models.areas import Area
from app.models.directory import MAX_AGE, Service, zone

# Category mapping: taxonomy terms (code or name) first, then the service's name and
# alternate name, then its description. The first category with a keyword found wins, in
# this order (psychosocial before medical: "mental health" must not read as "health").
# Override with the HSDS_CATEGORY_KEYWORDS setting (same shape).
DEFAULT_CATEGORY_KEYWORDS: dict[str, list[str]] = {
    "shelter": [
        "shelter",
        "refuge",
        "safe house",
        "emergency housing",
        "housing",
        "accommodation",
        "hostel",
    ],
    "legal": ["legal", "lawyer", "attorney", "immigration", "asylum", "law ", "court", "visa"],
    "psychosocial": [
        "counselling",
        "counseling",
        "mental health",
        "psycholog",
        "psychosocial",
        "therapy",
        "trauma",
        "support group",
        "peer support",
    ],
    "medical": ["medical", "health", "clinic", "doctor", "hospital", "nurse", "dental", "pharmacy"],
}

# ISO 639-2/3 and common forms of the languages Haven knows.
LANGUAGE_ALIASES = {
    "eng": "en",
    "spa": "es",
    "fra": "fr",
    "fre": "fr",
    "ara": "ar",
    "por": "pt",
    "rus": "ru",
    "ukr": "uk",
    "zho": "zh",
    "chi": "zh",
    "cmn": "zh",
    "vie": "vi",
    "tgl": "tl",
    "fil": "tl",
    "hin": "hi",
    "swa": "sw",
    "swh": "sw",
}
ENGLISH_LANGUAGE_NAMES = {
    "english": "en",
    "spanish": "es",
    "french": "fr",
    "arabic": "ar",
    "portuguese": "pt",
    "russian": "ru",
    "ukrainian": "uk",
    "chinese": "zh",
    "mandarin": "zh",
    "vietnamese": "vi",
    "tagalog": "tl",
    "filipino": "tl",
    "hindi": "hi",
    "swahili": "sw",
}
BYDAY = {"MO": 0, "TU": 1, "WE": 2, "TH": 3, "FR": 4, "SA": 5, "SU": 6}
STATUS_ACTIVE = {"active": True, "inactive": False, "defunct": False, "temporarily closed": False}
TABLES = (
    "organizations",
    "services",
    "phones",
    "languages",
    "schedules",
    "service_areas",
    "service_at_location",
    "locations",
    "accessibility",
    "attributes",
    "taxonomy_terms",
)
ORG_ONLY_KEYS = {
    "website",
    "tax_status",
    "tax_id",
    "year_incorporated",
    "legal_status",
    "logo",
    "parent_organization_id",
    "services",
    "organization_identifiers",
    "funding",
}
SERVICE_KEYS = {
    "organization_id",
    "organization",
    "service_at_locations",
    "service_areas",
    "status",
    "eligibility_description",
    "interpretation_services",
}
HSDS_NAMESPACE = uuid.UUID("6c1f2f0e-4d57-4a8e-9a77-2f6d1f0e5a11")


@dataclass
class Problem:
    file: str
    row: int | None
    reason: str
    skipped: bool = False  # the whole row was skipped (else: a field was dropped/fixed)

    def __str__(self) -> str:
        where = self.file + (f", row {self.row}" if self.row is not None else "")
        return f"{where}: {self.reason}" + (" (row skipped)" if self.skipped else "")


@dataclass
class Source:
    file: str
    row: int | None

    def problem(self, reason: str, skipped: bool = False) -> Problem:
        return Problem(self.file, self.row, reason, skipped)


@dataclass
class OrgRecord:
    hsds_id: str
    name: str
    source: Source


@dataclass
class ServiceRecord:
    hsds_id: str
    org_hsds_id: str | None
    name: str
    source: Source
    alternate_name: str = ""
    description: str = ""
    status: str | None = None
    terms: list[str] = field(default_factory=list)
    languages: list[tuple[dict[str, Any], Source]] = field(default_factory=list)
    phones: list[tuple[dict[str, Any], Source]] = field(default_factory=list)
    locations: list[tuple[dict[str, Any], Source]] = field(default_factory=list)
    schedules: list[tuple[dict[str, Any], Source]] = field(default_factory=list)
    areas: list[tuple[dict[str, Any], Source]] = field(default_factory=list)
    accessibility: list[str] = field(default_factory=list)
    minimum_age: Any = None
    maximum_age: Any = None


@dataclass
class ImportResult:
    problems: list[Problem] = field(default_factory=list)
    organizations_created: int = 0
    organizations_updated: int = 0
    services_created: int = 0
    services_updated: int = 0
    areas_created: int = 0
    rows_skipped: int = 0

    @property
    def usable(self) -> bool:
        return bool(
            self.organizations_created
            + self.organizations_updated
            + self.services_created
            + self.services_updated
        )

    def summary(self) -> str:
        return (
            f"organizations: {self.organizations_created} created, "
            f"{self.organizations_updated} updated; services: {self.services_created} created, "
            f"{self.services_updated} updated; areas created: {self.areas_created}; "
            f"rows skipped: {self.rows_skipped}; problems reported: {len(self.problems)}"
        )


class ImportFailed(Exception):
    """Nothing could be read at all (missing path, no HSDS data)."""


# --- reading ------------------------------------------------------------------------------


@dataclass
class Parsed:
    orgs: list[OrgRecord] = field(default_factory=list)
    services: list[ServiceRecord] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def read_path(path: str) -> Parsed:
    parsed = Parsed()
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "datapackage.json")) or os.path.exists(
            os.path.join(path, "services.csv")
        ):
            _read_tabular_folder(path, parsed)
        else:
            names = sorted(n for n in os.listdir(path) if n.endswith(".json"))
            if not names:
                raise ImportFailed("no HSDS JSON files or datapackage.json in that folder")
            for name in names:
                _read_json_file(os.path.join(path, name), parsed)
    elif os.path.isfile(path):
        _read_json_file(path, parsed)
    else:
        raise ImportFailed("no such file or folder")
    return parsed


def _read_json_file(path: str, parsed: Parsed) -> None:
    name = os.path.basename(path)
    try:
        with open(path, encoding="utf-8-sig") as fh:
            data = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        parsed.problems.append(
            Problem(name, None, f"not readable JSON ({exc.__class__.__name__})", skipped=True)
        )
        return
    if isinstance(data, dict) and data and all(str(k).endswith(".csv") for k in data):
        tables = {
            k[:-4]: [(i + 2, r) for i, r in enumerate(v or []) if isinstance(r, dict)]
            for k, v in data.items()
            if isinstance(v, list)
        }
        _read_tables(tables, {k: f"{name} [{k}.csv]" for k in tables}, parsed)
        return
    if isinstance(data, dict) and isinstance(data.get("contents"), list):
        items = data["contents"]
    elif isinstance(data, list):
        items = data
    else:
        items = [data]
    for index, item in enumerate(items, start=1):
        _read_object(item, Source(name, index), parsed)


def _kind(obj: dict[str, Any]) -> str:
    keys = set(obj)
    if "service" in keys and "location" in keys:
        return "service_at_location"
    if keys & SERVICE_KEYS:
        return "service"
    if keys & ORG_ONLY_KEYS:
        return "organization"
    if keys & {"location_type", "latitude", "longitude", "addresses"}:
        return "location"
    if keys & {"version", "profile", "openapi_url", "taxonomy", "taxonomy_detail", "term_uri"}:
        return "other"
    return "unknown"


def _read_object(obj: Any, src: Source, parsed: Parsed) -> None:
    if not isinstance(obj, dict):
        parsed.problems.append(src.problem("not an object", skipped=True))
        return
    kind = _kind(obj)
    if kind == "organization":
        org = _org_record(obj, src, parsed)
        if org is None:
            return
        for service in obj.get("services") or []:
            if isinstance(service, dict):
                _service_record(service, src, parsed, org_hsds_id=org.hsds_id)
    elif kind == "service":
        nested = obj.get("organization")
        org_id = _text(obj.get("organization_id")) or None
        if isinstance(nested, dict):
            org = _org_record(nested, src, parsed)
            org_id = org.hsds_id if org else org_id
        _service_record(obj, src, parsed, org_hsds_id=org_id)
    elif kind == "service_at_location":
        service = obj.get("service")
        if not isinstance(service, dict):
            parsed.problems.append(src.problem("service_at_location without a service", True))
            return
        service = dict(service)
        service.setdefault(
            "service_at_locations", [{k: v for k, v in obj.items() if k != "service"}]
        )
        _read_object(service, src, parsed)
    elif kind in ("location", "other"):
        # Locations, taxonomies and metadata on their own carry no service to import.
        what = "a location" if kind == "location" else "taxonomy or metadata"
        parsed.problems.append(src.problem(f"{what} without a service: nothing to import"))
    else:
        parsed.problems.append(src.problem("not an HSDS organization or service", True))


def _org_record(obj: dict[str, Any], src: Source, parsed: Parsed) -> OrgRecord | None:
    hsds_id, name = _text(obj.get("id")), _text(obj.get("name"))
    if not hsds_id or len(hsds_id) > 64:
        parsed.problems.append(src.problem("organization without a usable id", True))
        return None
    if not name:
        parsed.problems.append(src.problem("organization without a name", True))
        return None
    record = OrgRecord(hsds_id, name[:200], src)
    parsed.orgs.append(record)
    return record


def _items(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _service_record(
    obj: dict[str, Any], src: Source, parsed: Parsed, org_hsds_id: str | None
) -> None:
    hsds_id, name = _text(obj.get("id")), _text(obj.get("name"))
    if not hsds_id or len(hsds_id) > 64:
        parsed.problems.append(src.problem("service without a usable id", True))
        return
    if not name:
        parsed.problems.append(src.problem(f"service {hsds_id} has no name", True))
        return
    rec = ServiceRecord(
        hsds_id=hsds_id,
        org_hsds_id=org_hsds_id,
        name=name,
        source=src,
        alternate_name=_text(obj.get("alternate_name")),
        description=_text(obj.get("description")),
        status=_text(obj.get("status")) or None,
        minimum_age=obj.get("minimum_age"),
        maximum_age=obj.get("maximum_age"),
    )
    for attr in _items(obj.get("attributes")):
        term = attr.get("taxonomy_term")
        if isinstance(term, dict):
            rec.terms += [_text(term.get("code")), _text(term.get("name"))]
    for term in _items(obj.get("taxonomy_terms")):
        rec.terms += [_text(term.get("code")), _text(term.get("name"))]
    rec.languages += [(lang, src) for lang in _items(obj.get("languages"))]
    rec.phones += [(p, src) for p in _items(obj.get("phones"))]
    rec.schedules += [(s, src) for s in _items(obj.get("schedules"))]
    rec.areas += [(a, src) for a in _items(obj.get("service_areas"))]
    for sal in _items(obj.get("service_at_locations")):
        rec.phones += [(p, src) for p in _items(sal.get("phones"))]
        rec.schedules += [(s, src) for s in _items(sal.get("schedules"))]
        location = sal.get("location")
        if isinstance(location, dict):
            rec.locations.append((location, src))
            rec.phones += [(p, src) for p in _items(location.get("phones"))]
            for acc in _items(location.get("accessibility")):
                rec.accessibility.append(
                    _text(acc.get("description")) + " " + _text(acc.get("details"))
                )
    for location in _items(obj.get("locations")):
        rec.locations.append((location, src))
    parsed.services.append(rec)


# --- tabular data package -------------------------------------------------------------------


def _read_tabular_folder(path: str, parsed: Parsed) -> None:
    files = {t: f"{t}.csv" for t in TABLES}
    descriptor = os.path.join(path, "datapackage.json")
    if os.path.exists(descriptor):
        try:
            with open(descriptor, encoding="utf-8-sig") as fh:
                package = json.load(fh)
            resources = package["resources"]
            for res in resources:
                name, rel = res.get("name"), res.get("path")
                if (
                    name in files
                    and isinstance(rel, str)
                    and not os.path.isabs(rel)
                    and ".." not in rel
                ):
                    files[name] = rel
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            parsed.problems.append(
                Problem(
                    "datapackage.json",
                    None,
                    "not a valid data package descriptor; reading the standard HSDS file names",
                )
            )
    tables: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for table, rel in files.items():
        full = os.path.join(path, rel)
        if not os.path.exists(full):
            continue
        rows: list[tuple[int, dict[str, Any]]] = []
        try:
            with open(full, encoding="utf-8-sig", newline="") as fh:
                reader = csv.DictReader(fh)
                line = 1
                for row in reader:
                    rows.append((line + 1, row))
                    line = reader.line_num
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            parsed.problems.append(
                Problem(rel, None, f"not readable CSV ({exc.__class__.__name__})", skipped=True)
            )
            continue
        tables[table] = rows
    if "services" not in tables and "organizations" not in tables:
        raise ImportFailed("the data package has neither organizations.csv nor services.csv")
    _read_tables(tables, {t: files[t] for t in tables}, parsed)


def _read_tables(
    tables: dict[str, list[tuple[int, dict[str, Any]]]], names: dict[str, str], parsed: Parsed
) -> None:
    def src(table: str, line: int) -> Source:
        return Source(names.get(table, f"{table}.csv"), line)

    for line, row in tables.get("organizations", []):
        _org_record(row, src("organizations", line), parsed)
    by_id: dict[str, ServiceRecord] = {}
    for line, row in tables.get("services", []):
        before = len(parsed.services)
        _service_record(
            row,
            src("services", line),
            parsed,
            org_hsds_id=_text(row.get("organization_id")) or None,
        )
        if len(parsed.services) > before:
            by_id[parsed.services[-1].hsds_id] = parsed.services[-1]

    def attach(table: str, key: str, target: str) -> None:
        for line, row in tables.get(table, []):
            sid = _text(row.get(key))
            if not sid:
                continue  # belongs to a location or organization, not a service
            rec = by_id.get(sid)
            if rec is None:
                parsed.problems.append(
                    src(table, line).problem(
                        f"refers to service {sid}, which is not in services", True
                    )
                )
                continue
            getattr(rec, target).append((row, src(table, line)))

    attach("phones", "service_id", "phones")
    attach("languages", "service_id", "languages")
    attach("schedules", "service_id", "schedules")
    attach("service_areas", "service_id", "areas")
    locations = {_text(r.get("id")): (line, r) for line, r in tables.get("locations", [])}
    accessibility: dict[str, list[str]] = {}
    for _, row in tables.get("accessibility", []):
        accessibility.setdefault(_text(row.get("location_id")), []).append(
            _text(row.get("description")) + " " + _text(row.get("details"))
        )
    for line, row in tables.get("service_at_location", []):
        rec = by_id.get(_text(row.get("service_id")))
        if rec is None:
            parsed.problems.append(
                src("service_at_location", line).problem(
                    f"refers to service {_text(row.get('service_id'))}, which is not in services",
                    True,
                )
            )
            continue
        loc_id = _text(row.get("location_id"))
        if loc_id in locations:
            loc_line, loc = locations[loc_id]
            rec.locations.append((loc, src("locations", loc_line)))
            rec.accessibility += accessibility.get(loc_id, [])
        elif loc_id:
            parsed.problems.append(
                src("service_at_location", line).problem(f"location {loc_id} is not in locations")
            )
    terms = {_text(r.get("id")): r for _, r in tables.get("taxonomy_terms", [])}
    for _, row in tables.get("attributes", []):
        rec = by_id.get(_text(row.get("link_id")))
        term = terms.get(_text(row.get("taxonomy_term_id")))
        if rec is not None and term is not None:
            rec.terms += [_text(term.get("code")), _text(term.get("name"))]


# --- field conversion -----------------------------------------------------------------------


def category_for(rec: ServiceRecord) -> str:
    mapping: dict[str, list[str]] = current_app.config.get(
        "HSDS_CATEGORY_KEYWORDS", DEFAULT_CATEGORY_KEYWORDS
    )
    for texts in (rec.terms, [rec.name, rec.alternate_name], [rec.description]):
        haystack = " " + " ".join(t.casefold() for t in texts if t) + " "
        for category, words in mapping.items():
            if category in vocab.SERVICE_CATEGORIES and any(
                w.casefold() in haystack for w in words
            ):
                return category
    return "other"


def language_code(raw: dict[str, Any]) -> str | None:
    code = _text(raw.get("code")).lower().replace("_", "-")
    if code:
        base = code.split("-")[0]
        base = LANGUAGE_ALIASES.get(base, base)
        return base if base in vocab.SURVIVOR_LANGUAGES else None
    return ENGLISH_LANGUAGE_NAMES.get(_text(raw.get("name")).casefold())


def timezone_name(raw: Any, src: Source, problems: list[Problem]) -> str | None:
    """HSDS 3.0 gives a numeric UTC offset; Haven needs an IANA zone for daylight saving.
    A whole-hour offset becomes the fixed zone Etc/GMT∓N (reported); anything else is
    reported and ignored."""
    text = _text(raw)
    if not text:
        return None
    if re.fullmatch(r"[A-Za-z_]+(/[A-Za-z0-9_+\-]+)+|UTC", text):
        if zone(text).key == text:
            return text
        problems.append(src.problem(f"unknown timezone '{text}': ignored"))
        return None
    try:
        offset = float(text)
    except ValueError:
        problems.append(src.problem(f"unknown timezone '{text[:40]}': ignored"))
        return None
    if offset.is_integer() and -12 <= offset <= 14:
        hours = int(offset)
        name = "UTC" if hours == 0 else f"Etc/GMT{'-' if hours > 0 else '+'}{abs(hours)}"
        problems.append(
            src.problem(
                f"numeric timezone offset '{text}': read as fixed UTC{hours:+d} without daylight "
                "saving; set the service's timezone by name"
            )
        )
        return name
    problems.append(src.problem(f"numeric timezone offset '{text}' is not a whole hour: ignored"))
    return None


def _clock(raw: Any) -> str | None:
    m = re.fullmatch(r"(\d{1,2}):(\d{2})(:\d{2}(\.\d+)?)?([+-]\d{2}:?\d{2}|Z)?", _text(raw))
    if not m:
        return None
    h, mi = int(m.group(1)), int(m.group(2))
    if h > 24 or mi > 59 or (h == 24 and mi):
        return None
    return f"{h:02d}:{mi:02d}"


def schedule_hours(raw: dict[str, Any], src: Source, problems: list[Problem]) -> list[list[Any]]:
    opens, closes = _clock(raw.get("opens_at")), _clock(raw.get("closes_at"))
    if not raw.get("opens_at") and not raw.get("closes_at"):
        return []
    if opens is None or closes is None:
        problems.append(src.problem("schedule opening times are not HH:MM: ignored"))
        return []
    freq = _text(raw.get("freq")).upper()
    if freq and freq not in ("WEEKLY", "DAILY"):
        problems.append(src.problem(f"schedule frequency '{freq[:20]}' not supported: ignored"))
        return []
    days_text = _text(raw.get("byday")).upper()
    if freq == "DAILY" or not days_text:
        days = list(range(7))
    else:
        days = []
        for token in days_text.split(","):
            token = re.sub(r"^[+-]?\d+", "", token.strip())
            if token in BYDAY:
                days.append(BYDAY[token])
            else:
                problems.append(src.problem(f"schedule day '{token[:10]}' unknown: ignored"))
    return [[d, opens, closes] for d in sorted(set(days))]


def ages(
    min_raw: Any, max_raw: Any, src: Source, problems: list[Problem]
) -> tuple[int | None, int | None] | None:
    """The exact eligible ages (inclusive, None: no limit) a record gives, or None when
    they cannot be used (reported): a value that is not an age, or a minimum above the
    maximum. Ignoring one bound would widen eligibility, so both are then left as the
    directory holds them. A fraction is narrowed to the whole years inside it (a minimum of
    17.5 is 18), never widened."""
    unusable = False

    def number(value: Any, label: str, narrow: Any) -> int | None:
        nonlocal unusable
        if value in (None, ""):
            return None
        try:
            out = float(value)
        except (TypeError, ValueError):
            problems.append(src.problem(f"{label} '{_text(value)[:20]}' is not a number: ignored"))
            unusable = True
            return None
        if not math.isfinite(out) or out < 0 or out > MAX_AGE:
            problems.append(src.problem(f"{label} {out:g} out of range: ignored"))
            unusable = True
            return None
        whole = int(narrow(out))
        if whole != out:
            problems.append(
                src.problem(f"{label} {out:g} is not a whole number: read as {whole}")
            )
        return whole

    low = number(min_raw, "minimum_age", math.ceil)
    high = number(max_raw, "maximum_age", math.floor)
    if low is not None and high is not None and low > high:
        problems.append(src.problem("minimum_age above maximum_age: ages ignored"))
        return None
    return None if unusable else (low, high)


def coordinates(
    raw: dict[str, Any], src: Source, problems: list[Problem]
) -> tuple[float, float] | None:
    lat_raw, lon_raw = raw.get("latitude"), raw.get("longitude")
    if lat_raw in (None, "") and lon_raw in (None, ""):
        return None
    try:
        lat, lon = float(lat_raw), float(lon_raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        problems.append(src.problem("latitude/longitude not numbers: coordinates ignored"))
        return None
    if not -90 <= lat <= 90:
        problems.append(
            src.problem(f"latitude {lat:g} out of range (-90..90): coordinates ignored")
        )
        return None
    if not -180 <= lon <= 180:
        problems.append(
            src.problem(f"longitude {lon:g} out of range (-180..180): coordinates ignored")
        )
        return None
    return lat, lon


# --- applying -------------------------------------------------------------------------------


def import_path(path: str) -> ImportResult:
    """Read ``path`` and upsert its organizations and services (no commit)."""
    parsed = read_path(path)
    result = ImportResult(problems=list(parsed.problems))
    result.rows_skipped = sum(1 for p in parsed.problems if p.skipped)
    orgs: dict[str, Organization] = {}
    seen_orgs: set[str] = set()
    for rec in parsed.orgs:
        if rec.hsds_id in seen_orgs:
            continue  # the same organization nested in several services
        seen_orgs.add(rec.hsds_id)
        org = _upsert_org(rec, result)
        if org is not None:
            orgs[rec.hsds_id] = org
    seen_services: set[str] = set()
    for srec in parsed.services:
        if srec.hsds_id in seen_services:
            result.problems.append(
                srec.source.problem(
                    f"service {srec.hsds_id} appears twice: later copy skipped", True
                )
            )
            result.rows_skipped += 1
            continue
        seen_services.add(srec.hsds_id)
        _upsert_service(srec, orgs, result)
    return result


def _upsert_org(rec: OrgRecord, result: ImportResult) -> Organization | None:
    org = db.session.scalar(select(Organization).where(Organization.hsds_id == rec.hsds_id))
    same_name = db.session.scalar(
        select(Organization).where(func.lower(Organization.name) == rec.name.lower())
    )
    if org is None:
        if same_name is not None and same_name.hsds_id is None:
            org = same_name  # an organization entered by hand: link it to its HSDS id
            org.hsds_id = rec.hsds_id
        elif same_name is not None:
            result.problems.append(
                rec.source.problem(
                    f"organization name is already used by another HSDS organization "
                    f"({same_name.hsds_id})",
                    True,
                )
            )
            result.rows_skipped += 1
            return None
        else:
            org = Organization(name=rec.name, kind="provider", hsds_id=rec.hsds_id)
            db.session.add(org)
            db.session.flush()
            audit.record("organization.import", "organization", org.id)
            result.organizations_created += 1
            return org
    elif same_name is not None and same_name.id != org.id:
        result.problems.append(
            rec.source.problem(
                "organization name is already used by another organization: name not updated"
            )
        )
    else:
        org.name = rec.name
    if db.session.is_modified(org):
        db.session.flush()
        audit.record("organization.import", "organization", org.id)
    result.organizations_updated += 1
    return org


def _area(name: str, result: ImportResult) -> Area:
    area = db.session.scalar(select(Area).where(func.lower(Area.name) == name.lower()))
    if area is None:
        area = Area(name=name)
        db.session.add(area)
        db.session.flush()
        audit.record("area.import", "area", area.id)
        result.areas_created += 1
    return area


def _upsert_service(
    rec: ServiceRecord, orgs: dict[str, Organization], result: ImportResult
) -> None:
    problems = result.problems
    org = orgs.get(rec.org_hsds_id or "")
    if org is None and rec.org_hsds_id:
        org = db.session.scalar(select(Organization).where(Organization.hsds_id == rec.org_hsds_id))
    if org is None:
        reason = (
            f"organization {rec.org_hsds_id} not found"
            if rec.org_hsds_id
            else "service has no organization"
        )
        problems.append(rec.source.problem(reason, True))
        result.rows_skipped += 1
        return
    service = db.session.scalar(select(Service).where(Service.hsds_id == rec.hsds_id))
    created = service is None
    if service is None:
        service = Service(hsds_id=rec.hsds_id, organization=org)
        db.session.add(service)
    service.organization = org
    service.name = rec.name[:200]
    service.description = rec.description
    service.category = category_for(rec)
    if rec.status:
        active = STATUS_ACTIVE.get(rec.status.casefold())
        if active is None:
            problems.append(rec.source.problem(f"status '{rec.status[:30]}' unknown: kept as is"))
        else:
            service.active = active
    elif created:
        service.active = True

    codes: list[str] = []
    for raw, src in rec.languages:
        code = language_code(raw)
        if code is None:
            shown = _text(raw.get("code")) or _text(raw.get("name"))
            problems.append(
                src.problem(
                    f"unknown language code '{shown[:20]}' (not one of Haven's languages): ignored"
                )
            )
        elif code not in codes:
            codes.append(code)
    # A part the record leaves out keeps what the directory holds (partial feeds); a part it
    # gives replaces it.
    if rec.languages or created:
        service.language_list = codes

    phone = None
    for raw, src in rec.phones:
        number = _text(raw.get("number"))
        if not number:
            continue
        try:
            e164 = normalize_phone(number)
        except InvalidPhoneNumber:
            problems.append(src.problem("phone number is not a valid number: ignored"))
            continue
        if number != number.strip("\"' "):
            problems.append(src.problem("phone number had stray quotes: normalised"))
        phone = e164
        break
    # The intake phone receives referral codes and may answer ACCEPT, DECLINE and BEDS: a
    # feed never sets or changes it (an admin or the provider does, on the service form).
    # Where the feed's number is not it, the report says so, naming no number.
    if phone is not None and phone != service.intake_phone:
        problems.append(
            rec.source.problem(
                f"service {rec.hsds_id}: feed phone differs from the intake phone; not changed"
                if service.intake_phone
                else f"service {rec.hsds_id}: feed phone not used as the intake phone; an "
                "admin or the provider sets it on the service form"
            )
        )

    coords = None
    for raw, src in rec.locations:
        coords = coordinates(raw, src, problems)
        if coords:
            break
    if rec.locations or created:
        service.latitude, service.longitude = coords if coords else (None, None)
        text = " ".join(rec.accessibility).casefold()
        service.wheelchair_access = any(w in text for w in ("wheelchair", "step-free", "step free"))
        service.hearing_access = any(
            w in text for w in ("induction loop", "hearing", "sign language")
        )

    hours: list[list[Any]] = []
    tz: str | None = None
    for raw, src in rec.schedules:
        hours += [h for h in schedule_hours(raw, src, problems) if h not in hours]
        tz = tz or timezone_name(raw.get("timezone_name") or raw.get("timezone"), src, problems)
    if rec.schedules or created:
        service.hours = sorted(hours)
        service.timezone = tz or current_app.config.get("HAVEN_DIRECTORY_TIMEZONE", "UTC")

    if created or any(v not in (None, "") for v in (rec.minimum_age, rec.maximum_age)):
        # Exact, as the feed gives them; contradictory ages keep what the directory holds.
        given = ages(rec.minimum_age, rec.maximum_age, rec.source, problems)
        if given is not None:
            service.min_age, service.max_age = given

    areas: list[Area] = []
    for raw, src in rec.areas:
        name = _text(raw.get("name"))
        if not name:
            problems.append(src.problem("service area without a name: ignored"))
        elif len(name) > 120:
            problems.append(src.problem("service area name longer than 120 characters: ignored"))
        else:
            area = _area(name, result)
            if area not in areas:
                areas.append(area)
    if rec.areas or created:
        service.areas = areas

    db.session.flush()
    audit.record("service.import", "service", service.id)
    if created:
        result.services_created += 1
    else:
        result.services_updated += 1


# --- export ---------------------------------------------------------------------------------

WEEKDAY_CODES = {v: k for k, v in BYDAY.items()}


def org_hsds_id(org: Organization) -> str:
    return org.hsds_id or str(uuid.uuid5(HSDS_NAMESPACE, f"organization-{org.id}"))


def service_to_hsds(service: Service) -> dict[str, Any]:
    sid = service.hsds_id or str(uuid.uuid5(HSDS_NAMESPACE, f"service-{service.id}"))
    out: dict[str, Any] = {
        "id": sid,
        "organization_id": org_hsds_id(service.organization),
        "name": service.name,
        "description": service.description or "",
        "status": "active" if service.active else "inactive",
        "attributes": [
            {
                "id": str(uuid.uuid5(HSDS_NAMESPACE, f"attribute-{sid}")),
                "link_type": "service",
                "link_entity": "service",
                "value": service.category,
                "taxonomy_term": {
                    "id": str(uuid.uuid5(HSDS_NAMESPACE, f"term-{service.category}")),
                    "code": service.category,
                    "name": service.category,
                    "taxonomy": "haven",
                },
            }
        ],
        "languages": [
            {
                "id": str(uuid.uuid5(HSDS_NAMESPACE, f"language-{sid}-{c}")),
                "code": c,
                "name": vocab.SURVIVOR_LANGUAGE_LABELS[c],
            }
            for c in service.language_list
        ],
        "service_areas": [
            {"id": str(uuid.uuid5(HSDS_NAMESPACE, f"area-{sid}-{a.id}")), "name": a.name}
            for a in service.areas
        ],
    }
    if service.min_age is not None:
        out["minimum_age"] = service.min_age
    if service.max_age is not None:
        out["maximum_age"] = service.max_age
    by_time: dict[tuple[str, str], list[int]] = {}
    for weekday, opens, closes in service.hours or []:
        by_time.setdefault((opens, closes), []).append(int(weekday))
    out["schedules"] = [
        {
            "id": str(uuid.uuid5(HSDS_NAMESPACE, f"schedule-{sid}-{opens}-{closes}")),
            "freq": "WEEKLY",
            "byday": ",".join(WEEKDAY_CODES[d] for d in sorted(days)),
            "opens_at": opens,
            "closes_at": closes,
            "timezone_name": service.timezone,
        }
        for (opens, closes), days in sorted(by_time.items())
    ]
    # Haven keeps a service's IANA zone; HSDS 3.0 has only a numeric offset, so the name
    # travels in the non-standard "timezone_name" and the importer reads it back.
    location: dict[str, Any] = {
        "id": str(uuid.uuid5(HSDS_NAMESPACE, f"location-{sid}")),
        "location_type": "physical",
        "name": service.name,
    }
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
                "id": str(uuid.uuid5(HSDS_NAMESPACE, f"access-{sid}")),
                "description": " ".join(access),
            }
        ]
    out["service_at_locations"] = [
        {"id": str(uuid.uuid5(HSDS_NAMESPACE, f"sal-{sid}")), "location": location}
    ]
    return out


def export_organizations() -> list[dict[str, Any]]:
    """Every organization that offers services, as HSDS organization objects with nested
    services (the shape ``import_path`` reads back)."""
    services = db.session.scalars(
        select(Service).order_by(Service.organization_id, Service.id)
    ).all()
    by_org: dict[int, list[Service]] = {}
    for s in services:
        by_org.setdefault(s.organization_id, []).append(s)
    out = []
    for _org_id, rows in by_org.items():
        org = rows[0].organization
        out.append(
            {
                "id": org_hsds_id(org),
                "name": org.name,
                "services": [service_to_hsds(s) for s in rows],
            }
        )
    return out


def iter_problems(result: ImportResult) -> Iterator[str]:
    for p in sorted(result.problems, key=lambda p: (p.file, p.row or 0)):
        yield str(p)
