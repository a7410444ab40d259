"""Open Referral HSDS 3.0 import and export for the service directory (issue 4).

Import reads
* JSON: a file or a folder of ``*.json`` files holding organization objects (with nested
  ``services``), service objects (with nested ``organization``, ``service_at_locations``,
  ``phones``, ``languages``, ``schedules``, ``service_areas``), ``service_at_location``
  objects, paginated lists (``{"contents": [...]}``) or plain lists of those;
* the tabular data package: a folder with ``datapackage.json`` and the HSDS CSV files
  (``organizations.csv``, ``services.csv``, ``phones.csv``, ``languages.csv``,
  ``schedules.csv``, ``service_areas.csv``, ``service_at_location.csv``, ``locations.csv``,
  ``accessibility.csv``, ``attributes.csv``, ``taxonomy_terms.csv``, and HSDS 3.1's
  ``service_capacity.csv`` with ``unit.csv`` (or ``units.csv``)).

HSDS 3.1 capacity in beds becomes the bed counts through the one capacity rule
(``_import_beds``), from JSON and tables alike. HSDS 1.x and 2.x are refused, packages and
JSON documents alike, naming what gave the version away (``refuse_old_versions``,
``refuse_old_json``): read as 3.0 they would lose languages, hours and phones.

Real directories are messy: every bad row or field becomes a ``Problem`` naming the file,
the row (1-based object index for JSON, CSV line number for tables) and the reason; a bad
row is skipped, a bad field is dropped (or normalised when that is safe) and the rest of the
row imported. Re-import updates by HSDS id and never duplicates. Fields HSDS does not carry
(bed capacity, gender eligibility, ...) are left as they are on update.

The files come from third parties, so nothing in them is trusted (``Limits``):

* a file is read only if it is a regular file no larger than ``HSDS_MAX_FILE_BYTES`` (its
  size is checked before reading and at most that many bytes + 1 are read, so memory is
  bounded by the limit); a symbolic link is followed only to a file inside the package's
  folder; the text must be UTF-8 (the first bad byte is named with its line);
* JSON nested deeper than ``MAX_JSON_DEPTH`` levels is refused by an iterative scan before
  parsing (no recursion); syntax errors are named with line and column;
* a field Haven reads must be text (or a number) of at most ``HSDS_MAX_FIELD_CHARS``
  characters without NUL: anything else (a list, an object, ``true``) is reported as
  ``file, row N: field X must be text`` and ignored, so a required field (id, name) missing
  skips the row; a structure that must be a list of objects and is not is reported and
  ignored;
* a file the import was pointed at (PATH itself, a CSV file of the tabular package, or a file
  its ``datapackage.json`` names) that cannot be read at all makes the whole import fail
  after everything else readable was reported: nothing is imported (``ImportResult
  .unreadable``). A broken ``datapackage.json`` is reported and the standard file names
  read; a broken file in a folder of JSON files is reported and the other files imported.
Intake phones are never imported nor exported: the intake phone is the number Haven trusts
(it receives referral codes and may answer ACCEPT, DECLINE and BEDS), set only by an admin or
the provider on the service form. A feed's phone that is not the intake phone is reported.

The functions here add to the session and never commit: the CLI owns the transaction, so a
failure half-way leaves the database unchanged.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import stat
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import func, select

from app.core import audit, vocab
from app.core.crypto import InvalidPhoneNumber, normalize_phone
from app.core.extensions import db
from app.directory import capacity
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

# Category mapping by taxonomy code, before any keyword: a code matches an entry when the
# entry is the code itself or one of its parents (AIRS / 211 LA codes: "BH-1800.1500" is
# tried as BH-1800.1500, BH-1800, BH, B; Haven's own translated terms "shelter:es" as
# shelter). Override with the HSDS_CATEGORY_TERMS setting (same shape).
DEFAULT_CATEGORY_TERMS: dict[str, str] = {
    # Haven's own taxonomy (app.hsds_export)
    **{c: c for c in ("shelter", "legal", "medical", "psychosocial", "other")},
    # AIRS / 211 LA taxonomy: Housing/Shelter, Criminal Justice and Legal Services, Health
    # Care, Mental Health Care and Counseling
    "BH": "shelter",
    "F": "legal",
    "L": "medical",
    "R": "psychosocial",
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
    # HSDS 3.1: capacity of a service in units (Haven reads beds).
    "service_capacity",
    "unit",
)
# Other names a table's file goes by when the descriptor does not name it (HSDS 3.2 calls
# the unit table units.csv).
OTHER_FILE_NAMES = {"unit": "units.csv"}
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
# A schedule's IANA zone travels as an attribute of this term (app.hsds_export).
TIMEZONE_TERM_CODE = "iana_timezone"
TIMEZONE_TERM_ID = str(uuid.uuid5(HSDS_NAMESPACE, "term-iana-timezone"))
# HSDS 3.0 descriptors name resources in the singular ("service"); older packages and our
# own fixtures use the table names.
RESOURCE_TABLES = {
    **{t: t for t in TABLES},
    "organization": "organizations",
    "service": "services",
    "phone": "phones",
    "language": "languages",
    "schedule": "schedules",
    "service_area": "service_areas",
    "location": "locations",
    "attribute": "attributes",
    "taxonomy_term": "taxonomy_terms",
}
# The fields Haven reads from each kind of record: each must be text or a number (ids,
# ages and coordinates may come as JSON numbers).
TEXT_FIELDS: dict[str, tuple[str, ...]] = {
    "organization": ("id", "name", "description"),
    "service": (
        "id",
        "organization_id",
        "name",
        "alternate_name",
        "description",
        "status",
        "minimum_age",
        "maximum_age",
        "eligibility_description",
        "url",
        "email",
    ),
    "term": ("id", "code", "name"),
    "attribute": ("link_id", "taxonomy_term_id"),
    "language": ("service_id", "code", "name"),
    "phone": ("service_id", "number"),
    "schedule": (
        "service_id",
        "opens_at",
        "closes_at",
        "freq",
        "byday",
        "timezone_name",
        "timezone",
    ),
    "service_area": ("service_id", "name"),
    "service_at_location": ("service_id", "location_id"),
    "location": ("id", "latitude", "longitude"),
    "accessibility": ("location_id", "description", "details"),
    "capacity": ("service_id", "unit_id", "available", "maximum"),
    "unit": ("id", "name", "identifier"),
}
TABLE_KINDS = {
    "phones": "phone",
    "languages": "language",
    "schedules": "schedule",
    "service_areas": "service_area",
    "service_capacity": "capacity",
}
# HSDS nests five or six levels deep (organization > services > service_at_locations >
# location > phones); anything far deeper is hostile.
MAX_JSON_DEPTH = 64
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.S)


@dataclass(frozen=True)
class Limits:
    """What one import reads at most (``HSDS_MAX_FILE_BYTES``, ``HSDS_MAX_FIELD_CHARS``)."""

    max_file_bytes: int = 20_000_000
    max_field_chars: int = 10_000
    max_depth: int = MAX_JSON_DEPTH


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
    description: str = ""


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
    term_codes: list[str] = field(default_factory=list)
    capacities: list[tuple[dict[str, Any], Source]] = field(default_factory=list)
    languages: list[tuple[dict[str, Any], Source]] = field(default_factory=list)
    phones: list[tuple[dict[str, Any], Source]] = field(default_factory=list)
    locations: list[tuple[dict[str, Any], Source]] = field(default_factory=list)
    schedules: list[tuple[dict[str, Any], Source]] = field(default_factory=list)
    areas: list[tuple[dict[str, Any], Source]] = field(default_factory=list)
    accessibility: list[str] = field(default_factory=list)
    minimum_age: Any = None
    maximum_age: Any = None
    eligibility_description: str = ""
    url: str = ""
    email: str = ""


@dataclass
class ImportResult:
    problems: list[Problem] = field(default_factory=list)
    organizations_created: int = 0
    organizations_updated: int = 0
    services_created: int = 0
    services_updated: int = 0
    areas_created: int = 0
    rows_skipped: int = 0
    services_in_other: int = 0
    # Files the import was pointed at that could not be read at all: nothing was imported.
    unreadable: list[str] = field(default_factory=list)

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
            f"rows skipped: {self.rows_skipped}; problems reported: {len(self.problems)}; "
            f"services in other: {self.services_in_other} of "
            f"{self.services_created + self.services_updated}"
        )


class ImportFailed(Exception):
    """Nothing could be read at all (missing path, no HSDS data)."""


class Unreadable(Exception):
    """One file cannot be read at all; the message says why (no content of the file)."""


# --- reading ------------------------------------------------------------------------------


@dataclass
class Parsed:
    orgs: list[OrgRecord] = field(default_factory=list)
    services: list[ServiceRecord] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    limits: Limits = field(default_factory=Limits)
    unreadable: list[str] = field(default_factory=list)

    def clean(self, raw: dict[str, Any], kind: str, src: Source) -> dict[str, Any]:
        """``raw`` without the fields of ``TEXT_FIELDS[kind]`` that are not usable text (each
        reported). Cleaning a cleaned record again reports nothing."""
        out = dict(raw)
        for key in TEXT_FIELDS[kind]:
            reason = _field_problem(out.get(key), self.limits.max_field_chars)
            if reason is not None:
                self.problems.append(src.problem(f"field {key} {reason}: ignored"))
                del out[key]
        return out

    def items(self, obj: dict[str, Any], key: str, src: Source) -> list[dict[str, Any]]:
        """The objects of the list ``obj[key]``; anything else reported and ignored."""
        value = obj.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.problems.append(src.problem(f"field {key} must be a list: ignored"))
            return []
        found = [v for v in value if isinstance(v, dict)]
        if len(found) < len(value):
            others = len(value) - len(found)
            what = "item is" if others == 1 else "items are"
            self.problems.append(
                src.problem(f"field {key}: {others} {what} not an object: ignored")
            )
        return found

    def nested(self, obj: dict[str, Any], key: str, src: Source) -> dict[str, Any] | None:
        value = obj.get(key)
        if value is None or isinstance(value, dict):
            return value
        self.problems.append(src.problem(f"field {key} must be an object: ignored"))
        return None


def _field_problem(value: Any, max_chars: int) -> str | None:
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return None
    if not isinstance(value, str):
        return "must be text"
    if len(value) > max_chars:
        return f"is longer than {max_chars} characters"
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode text"
    return None


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def read_path(path: str, limits: Limits | None = None) -> Parsed:
    parsed = Parsed(limits=limits or Limits())
    if os.path.isdir(path):
        if any(
            os.path.lexists(os.path.join(path, name))
            for name in ("datapackage.json", "services.csv", "organizations.csv")
        ):
            _read_tabular_folder(path, parsed)
        else:
            names = sorted(n for n in os.listdir(path) if n.endswith(".json"))
            if not names:
                raise ImportFailed("no HSDS JSON files or datapackage.json in that folder")
            for name in names:
                _read_json_file(os.path.join(path, name), parsed, folder=path)
    elif os.path.lexists(path):
        _read_json_file(path, parsed, folder=None)
    else:
        raise ImportFailed("no such file or folder")
    return parsed


def read_bytes(path: str, folder: str | None, max_bytes: int) -> bytes:
    """The content of one regular file of at most ``max_bytes`` bytes, reading no more
    than that (+1). Inside a package ``folder`` the file's real path (symbolic links
    resolved) must stay in the folder. Raises ``Unreadable``."""
    target = path
    if folder is not None:
        target = os.path.realpath(path)
        base = os.path.realpath(folder)
        if os.path.commonpath([target, base]) != base:
            raise Unreadable("a symbolic link to a file outside the package folder: refused")
    too_big = f"larger than {max_bytes} bytes (HAVEN_HSDS_MAX_FILE_BYTES): not read"
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(target, flags)
    except FileNotFoundError as exc:
        raise Unreadable("missing") from exc
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "bad name"
        raise Unreadable(f"cannot be opened ({reason})") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Unreadable("not a regular file")
        if info.st_size > max_bytes:
            raise Unreadable(too_big)
        chunks: list[bytes] = []
        left = max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise Unreadable(f"cannot be read ({exc.strerror or exc.__class__.__name__})") from exc
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > max_bytes:  # it grew since fstat
        raise Unreadable(too_big)
    return data


def decode_text(data: bytes) -> str:
    """UTF-8 (a byte order mark is dropped); the first bad byte is named with its line."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise Unreadable(
            f"not UTF-8 text: invalid byte 0x{data[exc.start]:02x} at line {line}; "
            "save the file as UTF-8"
        ) from exc


def _line_column(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def parse_json(data: bytes, limits: Limits) -> Any:
    """JSON from untrusted bytes: nesting checked without recursion before parsing, errors
    with line and column. Raises ``Unreadable``."""
    text = decode_text(data)
    depth = 0
    for token in _JSON_TOKEN.finditer(text):
        bracket = token.group()
        if bracket in "[{":
            depth += 1
            if depth > limits.max_depth:
                line, column = _line_column(text, token.start())
                raise Unreadable(
                    f"not readable JSON: nested deeper than {limits.max_depth} levels "
                    f"(line {line}, column {column})"
                )
        elif bracket in "]}":
            depth -= 1
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise Unreadable(
            f"not readable JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from exc
    except (ValueError, RecursionError) as exc:  # e.g. an integer of 5,000 digits
        raise Unreadable(f"not readable JSON ({exc.__class__.__name__})") from exc


def _read_json_file(path: str, parsed: Parsed, folder: str | None) -> None:
    """``folder``: the folder of JSON files this one was found in (None: the file itself
    was named, so not reading it fails the import)."""
    name = os.path.basename(path)
    try:
        data = parse_json(read_bytes(path, folder, parsed.limits.max_file_bytes), parsed.limits)
    except Unreadable as exc:
        parsed.problems.append(Problem(name, None, str(exc), skipped=True))
        if folder is None:
            parsed.unreadable.append(name)
        return
    refuse_old_json(name, data)
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
        for offered in parsed.items(obj, "services", src):
            _service_record(offered, src, parsed, org_hsds_id=org.hsds_id)
    elif kind == "service":
        obj = parsed.clean(obj, "service", src)
        nested = parsed.nested(obj, "organization", src)
        org_id = _text(obj.get("organization_id")) or None
        if nested is not None:
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
    obj = parsed.clean(obj, "organization", src)
    hsds_id, name = _text(obj.get("id")), _text(obj.get("name"))
    if not hsds_id or len(hsds_id) > 64:
        parsed.problems.append(src.problem("organization without a usable id", True))
        return None
    if not name:
        parsed.problems.append(src.problem("organization without a name", True))
        return None
    record = OrgRecord(hsds_id, name[:200], src, _text(obj.get("description")))
    parsed.orgs.append(record)
    return record


def _service_record(
    obj: dict[str, Any], src: Source, parsed: Parsed, org_hsds_id: str | None
) -> None:
    obj = parsed.clean(obj, "service", src)
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
        eligibility_description=_text(obj.get("eligibility_description")),
        url=_text(obj.get("url")),
        email=_text(obj.get("email")),
    )
    def cleaned(items: Iterable[dict[str, Any]], kind: str) -> list[tuple[dict[str, Any], Source]]:
        return [(parsed.clean(item, kind, src), src) for item in items]

    def term_texts(term: dict[str, Any]) -> list[str]:
        term = parsed.clean(term, "term", src)
        rec.term_codes.append(_text(term.get("code")))
        return [_text(term.get("code")), _text(term.get("name"))]

    def accessibility(location: dict[str, Any]) -> None:
        for acc in parsed.items(location, "accessibility", src):
            acc = parsed.clean(acc, "accessibility", src)
            rec.accessibility.append(
                _text(acc.get("description")) + " " + _text(acc.get("details"))
            )

    for attr in parsed.items(obj, "attributes", src):
        term = parsed.nested(attr, "taxonomy_term", src)
        if term is not None:
            rec.terms += term_texts(term)
    for term in parsed.items(obj, "taxonomy_terms", src):
        rec.terms += term_texts(term)
    rec.languages += cleaned(parsed.items(obj, "languages", src), "language")
    # HSDS 3.1: service_capacity objects (with their unit) under "capacities".
    rec.capacities += [(c, src) for c in parsed.items(obj, "capacities", src)]
    rec.phones += cleaned(parsed.items(obj, "phones", src), "phone")
    rec.schedules += cleaned(parsed.items(obj, "schedules", src), "schedule")
    rec.areas += cleaned(parsed.items(obj, "service_areas", src), "service_area")
    for sal in parsed.items(obj, "service_at_locations", src):
        rec.phones += cleaned(parsed.items(sal, "phones", src), "phone")
        rec.schedules += cleaned(parsed.items(sal, "schedules", src), "schedule")
        location = parsed.nested(sal, "location", src)
        if location is not None:
            rec.locations += cleaned([location], "location")
            rec.phones += cleaned(parsed.items(location, "phones", src), "phone")
            accessibility(location)
    for location in parsed.items(obj, "locations", src):
        rec.locations += cleaned([location], "location")
    parsed.services.append(rec)


# --- tabular data package -------------------------------------------------------------------


def _read_tabular_folder(path: str, parsed: Parsed) -> None:
    files = {t: f"{t}.csv" for t in TABLES}
    named: set[str] = set()  # tables whose file the descriptor names
    descriptor = os.path.join(path, "datapackage.json")
    limit = parsed.limits.max_file_bytes
    declared_version: str | None = None
    if os.path.lexists(descriptor):
        try:
            package = parse_json(read_bytes(descriptor, path, limit), parsed.limits)
            if isinstance(package, dict) and isinstance(package.get("version"), str):
                declared_version = package["version"][:20]
            resources = package["resources"]
            for res in resources:
                table, rel = RESOURCE_TABLES.get(str(res.get("name"))), res.get("path")
                if (
                    table is not None
                    and isinstance(rel, str)
                    and rel
                    and not os.path.isabs(rel)
                    and ".." not in rel
                    and "\x00" not in rel
                ):
                    files[table] = rel
                    named.add(table)
        except (Unreadable, KeyError, TypeError, AttributeError) as exc:
            why = f": {exc}" if isinstance(exc, Unreadable) else ""
            parsed.problems.append(
                Problem(
                    "datapackage.json",
                    None,
                    f"not a valid data package descriptor{why}; reading the standard HSDS "
                    "file names",
                )
            )
            files, named = {t: f"{t}.csv" for t in TABLES}, set()
    tables: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for table, rel in files.items():
        full = os.path.join(path, rel)
        other = OTHER_FILE_NAMES.get(table)
        if not os.path.lexists(full) and table not in named and other is not None:
            rel, full = other, os.path.join(path, other)
            files[table] = rel
        if not os.path.lexists(full):
            if table in named:
                parsed.problems.append(
                    Problem(rel, None, "named in datapackage.json but missing", skipped=True)
                )
                parsed.unreadable.append(rel)
            continue
        try:
            tables[table] = read_csv(read_bytes(full, path, limit))
        except Unreadable as exc:
            parsed.problems.append(Problem(rel, None, str(exc), skipped=True))
            parsed.unreadable.append(rel)
    refuse_old_versions(path, tables, declared_version)
    if "services" not in tables and "organizations" not in tables and not parsed.unreadable:
        raise ImportFailed("the data package has neither organizations.csv nor services.csv")
    _read_tables(tables, {t: files[t] for t in tables}, parsed)


# Tables (CSV files, JSON keys) only HSDS 1.x and 2.x have (3.0 has schedules, languages
# with code and name, addresses).
OLD_VERSION_TABLES = (
    "regular_schedules",
    "holiday_schedules",
    "eligibility",
    "service_taxonomy",
    "payment_accepted",
)
OLD_VERSION_FILES = tuple(f"{t}.csv" for t in OLD_VERSION_TABLES)
# Keys of 1.x/2.x JSON (HSDA) objects that 3.0 does not have.
OLD_VERSION_KEYS = frozenset(
    {
        *OLD_VERSION_TABLES,
        "regular_schedule",
        "holiday_schedule",
        "service_taxonomys",
        "physical_address",
        "physical_addresses",
        "postal_address",
        "postal_addresses",
        "accessibility_for_disabilities",
    }
)
OLD_VERSION_SHOWN = 5  # signs named in the refusal at most


def _old_version(declared: Any) -> bool:
    return isinstance(declared, str) and re.match(r"v?[12](\.|$)", declared.strip()) is not None


def _old_language(item: Any) -> bool:
    """A 1.x/2.x language: a record with a ``language`` field and neither ``code`` nor
    ``name`` (3.0). (A stray text item in a 3.0 list is a row's problem, not a version.)"""
    return isinstance(item, dict) and "language" in item and not {"code", "name"} & set(item)


def _refuse_old_version(what: str, signs: list[str]) -> ImportFailed:
    shown = list(dict.fromkeys(signs))
    more = len(shown) - OLD_VERSION_SHOWN
    text = "; ".join(shown[:OLD_VERSION_SHOWN]) + (f"; {more} more" if more > 0 else "")
    return ImportFailed(
        f"{what} is an HSDS 1.x or 2.x package ({text}). Haven reads HSDS 3.0 and 3.1: "
        "convert it first (Open Referral publishes the mapping)"
    )


def refuse_old_versions(
    path: str, tables: dict[str, list[tuple[int, dict[str, Any]]]], declared: str | None
) -> None:
    """An HSDS 1.x or 2.x package is refused with what gave it away: read as 3.0 it would
    lose languages, hours and phones and report nonsense about them."""
    signs = []
    if _old_version(declared):
        signs.append(f"datapackage.json declares version {declared}")
    signs += [n for n in OLD_VERSION_FILES if os.path.lexists(os.path.join(path, n))]
    languages = tables.get("languages") or []
    if languages and _old_language(languages[0][1]):
        signs.append("languages.csv has a 'language' column")
    if signs:
        raise _refuse_old_version("this", signs)


def refuse_old_json(name: str, data: Any) -> None:
    """A JSON document of HSDS 1.x or 2.x (HSDA) is refused with what gave it away, as a
    package is (``refuse_old_versions``): read as 3.0 it would import organizations without
    their services, and services without languages, hours and phones. What gives it away: a
    version declared at the top (an object that is no record: no ``id``), a key only 1.x/2.x
    objects have (``regular_schedule``, ``physical_address``...), languages given as
    ``language`` fields, phones with a ``language`` field. The walk uses a stack, so no
    nesting makes it recurse (``parse_json`` has bounded the depth anyway)."""
    signs: list[str] = []
    if isinstance(data, dict) and "id" not in data and _old_version(data.get("version")):
        signs.append(f"it declares version {data['version'].strip()[:20]}")
    stack: list[Any] = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        for key, value in node.items():
            # The JSON form of a tabular package names its tables "languages.csv".
            table = key[:-4] if isinstance(key, str) and key.endswith(".csv") else key
            if table in OLD_VERSION_KEYS:
                signs.append(f"objects have '{table}'")
            elif (
                table == "languages"
                and isinstance(value, list)
                and any(_old_language(item) for item in value)
            ):
                signs.append("languages have a 'language' field instead of code and name")
            elif (
                table == "phones"
                and isinstance(value, list)
                and any(isinstance(item, dict) and "language" in item for item in value)
            ):
                signs.append("phones have a 'language' field")
            if isinstance(value, dict | list):
                stack.append(value)
    if signs:
        raise _refuse_old_version(name, signs)


def read_csv(data: bytes) -> list[tuple[int, dict[str, Any]]]:
    """The rows of one CSV file with the line each starts on. Field lengths are checked per
    row later (``Parsed.clean``), so the csv module's own field limit is lifted to the
    file's size for the read: a long field is a row's problem, not the file's."""
    text = decode_text(data)
    rows: list[tuple[int, dict[str, Any]]] = []
    previous = csv.field_size_limit(max(len(text), 131_072))
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        line = 1
        for row in reader:
            rows.append((line + 1, row))
            line = reader.line_num
    except csv.Error as exc:
        raise Unreadable(f"not readable CSV (line {reader.line_num}: {exc})") from exc
    finally:
        csv.field_size_limit(previous)
    return rows


def _read_tables(  # noqa: C901 - one branch per field or reason, read top to bottom; a split is a follow-up
    tables: dict[str, list[tuple[int, dict[str, Any]]]], names: dict[str, str], parsed: Parsed
) -> None:
    def src(table: str, line: int) -> Source:
        return Source(names.get(table, f"{table}.csv"), line)

    def rows(table: str, kind: str) -> Iterator[tuple[int, dict[str, Any]]]:
        for line, row in tables.get(table, []):
            yield line, parsed.clean(row, kind, src(table, line))

    # When a file could not be read the import fails anyway; rows pointing at a service of
    # an unreadable services.csv would only bury the reason under "not in services".
    report_orphans = not parsed.unreadable

    for line, row in tables.get("organizations", []):
        _org_record(row, src("organizations", line), parsed)
    by_id: dict[str, ServiceRecord] = {}
    for line, row in tables.get("services", []):
        before = len(parsed.services)
        where = src("services", line)
        row = parsed.clean(row, "service", where)  # its organization_id too, before a query
        _service_record(row, where, parsed, org_hsds_id=_text(row.get("organization_id")) or None)
        if len(parsed.services) > before:
            by_id[parsed.services[-1].hsds_id] = parsed.services[-1]

    def attach(table: str, key: str, target: str) -> None:
        for line, row in rows(table, TABLE_KINDS[table]):
            sid = _text(row.get(key))
            if not sid:
                continue  # belongs to a location or organization, not a service
            rec = by_id.get(sid)
            if rec is None and not report_orphans:
                continue
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
    attach("service_capacity", "service_id", "capacities")
    # A capacity row names its unit by id (3.1 tabular); the unit goes inside it, as in JSON.
    units = {_text(r.get("id")): r for _, r in rows("unit", "unit")}
    for with_capacity in by_id.values():
        for capacity_row, where in with_capacity.capacities:
            unit_id = _text(capacity_row.get("unit_id"))
            if unit_id in units:
                capacity_row["unit"] = units[unit_id]
            else:
                unit_file = names.get("unit", "unit.csv")
                parsed.problems.append(
                    where.problem(f"unit {unit_id[:64]} is not in {unit_file}: ignored")
                    if unit_id
                    else where.problem("capacity without a unit_id: ignored")
                )
    locations = {_text(r.get("id")): (line, r) for line, r in rows("locations", "location")}
    accessibility: dict[str, list[str]] = {}
    for _, row in rows("accessibility", "accessibility"):
        accessibility.setdefault(_text(row.get("location_id")), []).append(
            _text(row.get("description")) + " " + _text(row.get("details"))
        )
    for line, row in rows("service_at_location", "service_at_location"):
        rec = by_id.get(_text(row.get("service_id")))
        if rec is None and not report_orphans:
            continue
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
    terms = {_text(r.get("id")): r for _, r in rows("taxonomy_terms", "term")}
    # A schedule's attributes (Haven's IANA zone): attached to that schedule's row.
    schedules = {
        _text(row.get("id")): row
        for rec in by_id.values()
        for row, _src in rec.schedules
        if _text(row.get("id"))
    }
    for _, row in tables.get("attributes", []):
        schedule = schedules.get(_text(row.get("link_id")))
        if schedule is not None and _text(row.get("link_entity")) == "schedule":
            schedule.setdefault("attributes", []).append(
                {"taxonomy_term_id": _text(row.get("taxonomy_term_id")), "value": row.get("value")}
            )
    for _, row in rows("attributes", "attribute"):
        rec = by_id.get(_text(row.get("link_id")))
        term = terms.get(_text(row.get("taxonomy_term_id")))
        if rec is not None and term is not None:
            rec.terms += [_text(term.get("code")), _text(term.get("name"))]
            rec.term_codes.append(_text(term.get("code")))


# --- field conversion -----------------------------------------------------------------------


def _code_candidates(code: str) -> list[str]:
    """A taxonomy code and its parents, most specific first."""
    code = code.strip()
    out = [code, code.split(":")[0]]
    while re.search(r"[.\-]", code):
        code = re.split(r"[.\-](?=[^.\-]*$)", code)[0]
        out.append(code)
    if len(code) > 1 and code[:2].isalpha():
        out.append(code[:1])
    return out


def category_for(rec: ServiceRecord) -> str:
    table: dict[str, str] = current_app.config.get("HSDS_CATEGORY_TERMS", DEFAULT_CATEGORY_TERMS)
    for code in rec.term_codes:
        for candidate in _code_candidates(code) if code else []:
            found = table.get(candidate) or table.get(candidate.upper())
            if found in vocab.SERVICE_CATEGORIES:
                return found
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
    if len(text) > 64:  # no IANA name is that long (and a long one is no file name)
        problems.append(src.problem("unknown timezone: ignored"))
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


def schedule_zone(raw: dict[str, Any]) -> str | None:
    """The IANA zone a schedule names in an attribute of the term ``iana_timezone`` (how
    Haven's export carries it beside the standard's numeric offset), if it is a known zone."""
    attributes = raw.get("attributes")
    for attr in attributes if isinstance(attributes, list) else []:
        term = attr.get("taxonomy_term") if isinstance(attr, dict) else None
        code = term.get("code") if isinstance(term, dict) else None
        value = attr.get("value") if isinstance(attr, dict) else None
        if (
            (code == TIMEZONE_TERM_CODE or attr.get("taxonomy_term_id") == TIMEZONE_TERM_ID)
            and isinstance(value, str)
            and len(value) <= 64
            and re.fullmatch(r"[A-Za-z_]+(/[A-Za-z0-9_+\-]+)+|UTC", value)
            and zone(value).key == value
        ):
            return value
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


def web_address(text: str, src: Source, problems: list[Problem]) -> str | None:
    """An absolute http(s) address of at most 500 characters (shown as a link on the
    service page), or None (reported)."""
    if not text:
        return None
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc or len(text) > 500 or (
        any(c.isspace() for c in text)
    ):
        problems.append(src.problem("url is not an http(s) address: ignored"))
        return None
    return text


def email_address(text: str, src: Source, problems: list[Problem]) -> str | None:
    if not text:
        return None
    if len(text) > 254 or not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", text):
        problems.append(src.problem("email is not an email address: ignored"))
        return None
    return text


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


def import_path(path: str, limits: Limits | None = None) -> ImportResult:
    """Read ``path`` and upsert its organizations and services (no commit). When a file it
    was pointed at cannot be read (``result.unreadable``), nothing is written."""
    parsed = read_path(path, limits)
    result = ImportResult(problems=list(parsed.problems), unreadable=list(parsed.unreadable))
    result.rows_skipped = sum(1 for p in parsed.problems if p.skipped)
    if result.unreadable:
        return result
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
            org = Organization(
                name=rec.name, kind="provider", hsds_id=rec.hsds_id, description=rec.description
            )
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
    if rec.description:
        org.description = rec.description
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


def _upsert_service(  # noqa: C901 - one branch per field or reason, read top to bottom; a split is a follow-up
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
    if rec.eligibility_description or created:
        service.eligibility_description = rec.eligibility_description
    if rec.url or created:
        service.url = web_address(rec.url, rec.source, problems)
    if rec.email or created:
        service.email = email_address(rec.email, rec.source, problems)
    service.category = category_for(rec)
    if service.category == "other":
        result.services_in_other += 1
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
                    if shown
                    else "language without a code or a name: ignored"
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
    if created:
        # A refuge's place is secret unless someone who knows says otherwise (the service
        # form): a new shelter from a feed starts confidential, as on the form.
        service.location_confidential = service.category == "shelter"
    if coords or ((rec.locations or created) and not service.location_confidential):
        # A confidential service's place is never published, so a feed without one (Haven's
        # own export) does not erase the place Haven keeps for matching.
        service.latitude, service.longitude = coords if coords else (None, None)
    if rec.locations or created:
        text = " ".join(rec.accessibility).casefold()
        service.wheelchair_access = any(w in text for w in ("wheelchair", "step-free", "step free"))
        service.hearing_access = any(
            w in text for w in ("induction loop", "hearing", "sign language")
        )

    hours: list[list[Any]] = []
    tz: str | None = None
    for raw, src in rec.schedules:
        hours += [h for h in schedule_hours(raw, src, problems) if h not in hours]
        tz = tz or schedule_zone(raw) or timezone_name(
            raw.get("timezone_name") or raw.get("timezone"), src, problems
        )
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
    _import_beds(rec, service, problems)
    if created:
        result.services_created += 1
    else:
        result.services_updated += 1


BED_UNITS = {"bed", "beds"}


def _import_beds(rec: ServiceRecord, service: Service, problems: list[Problem]) -> None:
    """HSDS 3.1 capacity in beds (a unit named or identified "bed") becomes the bed counts,
    through the one capacity rule: a count that the beds held for referrals contradict is
    reported and not written."""
    for raw, src in rec.capacities:
        given = raw.get("unit")
        unit: dict[str, Any] = given if isinstance(given, dict) else {}
        names = {_text(unit.get(k)).casefold() for k in ("name", "identifier")}
        if not names & BED_UNITS:
            continue
        try:
            free, total = int(str(raw.get("available"))), int(str(raw.get("maximum")))
        except ValueError:
            problems.append(src.problem("bed capacity is not whole numbers: ignored"))
            continue
        try:
            capacity.set_beds(service, total=total, free=free)
        except capacity.BedCountError as exc:
            if exc.reason in ("below_held", "over_total"):
                reason = (
                    f"service {rec.hsds_id}: the feed's beds ({free} free of {total}) "
                    f"conflicts with the {exc.held} beds held for referrals: counts not changed"
                )
            elif exc.reason == "not_shelter":
                reason = f"service {rec.hsds_id}: only shelters keep a bed count: ignored"
            else:
                reason = f"service {rec.hsds_id}: bed capacity refused ({exc.reason})"
            problems.append(src.problem(reason))
        return


def iter_problems(result: ImportResult) -> Iterator[str]:
    for p in sorted(result.problems, key=lambda p: (p.file, p.row or 0)):
        yield str(p)
