"""What the HSDS API reads (issue 17): public services only, as ``app.hsds_export`` maps
them (so no intake phone and no confidential place can appear: that mapping has neither),
paged with a fixed number of queries whatever the page size.

A service is public when it is active. Organizations listed are those offering at least one
public service.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, exists, func, or_, select

from app.core import vocab
from app.core.extensions import db
from app.directory.hsds_export import (
    TAXONOMY_ID,
    category_term_id,
    category_terms,
    full_options,
    hsds_id_of,
    is_uuid,
    last_modified,
    list_options,
    org_hsds_id,
    organization_to_hsds,
    sal_id,
    service_fields,
    service_hsds_id,
    service_to_hsds,
    taxonomy,
    timezone_term,
)
from app.models.accounts import Organization
from app.models.directory import Service

MAX_PER_PAGE = 100
DEFAULT_PER_PAGE = 50
class BadParameter(ValueError):
    """A query parameter the API cannot read; the message names it."""


@dataclass(frozen=True)
class Paging:
    page: int = 1
    per_page: int = DEFAULT_PER_PAGE


@dataclass(frozen=True)
class ServiceFilter:
    search: str | None = None
    taxonomy_term_id: str | None = None
    taxonomy_id: str | None = None
    organization_id: str | None = None
    modified_after: datetime | None = None


def page_of(items_total: int, paging: Paging, contents: list[Any]) -> dict[str, Any]:
    pages = max(1, math.ceil(items_total / paging.per_page)) if items_total else 0
    return {
        "total_items": items_total,
        "total_pages": pages,
        "page_number": paging.page,
        "size": len(contents),
        "first_page": paging.page == 1,
        "last_page": paging.page >= pages,
        "empty": not contents,
        "contents": contents,
    }


def _slice(items: Sequence[Any], paging: Paging) -> list[Any]:
    start = (paging.page - 1) * paging.per_page
    return list(items[start : start + paging.per_page]) if start < len(items) else []


def _like(text: str) -> str:
    return text.casefold()


def _public() -> Select[Any]:
    return select(Service).where(Service.active.is_(True))


def _categories_of_term(term_id: str, languages: Sequence[str]) -> list[str]:
    return [
        c
        for c in vocab.SERVICE_CATEGORIES
        for lang in ("en", *languages)
        if category_term_id(c, lang) == term_id
    ]


def _filtered(query: Select[Any], flt: ServiceFilter, languages: Sequence[str]) -> Select[Any]:
    if flt.search:
        needle = _like(flt.search)
        query = query.where(
            or_(
                func.lower(Service.name).contains(needle, autoescape=True),
                func.lower(Service.description).contains(needle, autoescape=True),
            )
        )
    if flt.taxonomy_term_id is not None:
        query = query.where(
            Service.category.in_(_categories_of_term(flt.taxonomy_term_id, languages))
        )
    if flt.taxonomy_id is not None and flt.taxonomy_id != TAXONOMY_ID:
        query = query.where(Service.id.is_(None))  # no service has a term of that taxonomy
    if flt.organization_id is not None:
        org = public_organization(flt.organization_id)
        query = query.where(Service.organization_id == (org.id if org else None))
    if flt.modified_after is not None:
        query = query.where(Service.updated_at >= flt.modified_after)
    return query


def _count(query: Select[Any]) -> int:
    return int(db.session.scalar(select(func.count()).select_from(query.subquery())) or 0)


def _page_rows(query: Select[Any], paging: Paging, total: int, full: bool) -> list[Service]:
    if (paging.page - 1) * paging.per_page >= total:
        return []  # past the end (also: no huge OFFSET reaches the database)
    loads = full_options() if full else list_options()
    return list(
        db.session.scalars(
            query.options(*loads)
            .order_by(Service.id)
            .offset((paging.page - 1) * paging.per_page)
            .limit(paging.per_page)
        )
    )


def service_summary(service: Service) -> dict[str, Any]:
    return service_fields(service)


def services_page(
    flt: ServiceFilter, paging: Paging, languages: Sequence[str], *, full: bool, minimal: bool
) -> dict[str, Any]:
    query = _filtered(_public(), flt, languages)
    total = _count(query)
    rows = _page_rows(query, paging, total, full)
    if minimal:
        contents = [
            {"id": service_hsds_id(s), "name": s.name, "status": "active",
             "last_modified": last_modified(s)}
            for s in rows
        ]
    elif full:
        contents = [service_to_hsds(s) for s in rows]
    else:
        contents = [service_summary(s) for s in rows]
    return page_of(total, paging, contents)


def _full(query: Select[Any]) -> Service | None:
    return db.session.scalar(query.options(*full_options()))


def _public_ids() -> Any:
    return db.session.execute(select(Service.id, Service.hsds_id).where(Service.active.is_(True)))


def public_service(wanted: str) -> Service | None:
    """The public service published as ``wanted`` (a UUID: its stored HSDS id, or derived
    from a stored id that is not one, or from the row)."""
    if not is_uuid(wanted):
        return None
    found = _full(_public().where(Service.hsds_id == wanted))
    if found is not None:
        return found
    for service_id, hsds_id in _public_ids():
        if hsds_id != wanted and hsds_id_of(service_id, hsds_id) == wanted:
            return _full(_public().where(Service.id == service_id))
    return None


def service_full(service: Service) -> dict[str, Any]:
    out = service_to_hsds(service)
    org = service.organization
    out["organization"] = {
        "id": org_hsds_id(org),
        "name": org.name,
        "description": org.description or org.name,
    }
    return out


def _public_orgs() -> Select[Any]:
    offers = exists().where(Service.organization_id == Organization.id, Service.active.is_(True))
    return select(Organization).where(offers)


def organizations_page(
    search: str | None, paging: Paging, *, full: bool, full_service: bool
) -> dict[str, Any]:
    query = _public_orgs()
    if search:
        query = query.where(func.lower(Organization.name).contains(_like(search), autoescape=True))
    total = _count(query)
    if (paging.page - 1) * paging.per_page >= total:
        orgs: list[Organization] = []
    else:
        orgs = list(
            db.session.scalars(
                query.order_by(Organization.id)
                .offset((paging.page - 1) * paging.per_page)
                .limit(paging.per_page)
            )
        )
    if full or full_service:
        services = services_of([o.id for o in orgs])
        contents = [organization_json(o, services.get(o.id, []), full_service) for o in orgs]
    else:
        contents = [
            {"id": org_hsds_id(o), "name": o.name, "description": o.description or o.name}
            for o in orgs
        ]
    return page_of(total, paging, contents)


def services_of(org_ids: list[int]) -> dict[int, list[Service]]:
    if not org_ids:
        return {}
    rows = db.session.scalars(
        _public()
        .where(Service.organization_id.in_(org_ids))
        .options(*full_options())
        .order_by(Service.id)
    )
    out: dict[int, list[Service]] = {}
    for s in rows:
        out.setdefault(s.organization_id, []).append(s)
    return out


def organization_json(
    org: Organization, services: list[Service], full_service: bool
) -> dict[str, Any]:
    out = organization_to_hsds(org, services if full_service else [])
    if not full_service:
        out["services"] = [service_summary(s) for s in services]
    return out


def public_organization(wanted: str) -> Organization | None:
    if not is_uuid(wanted):
        return None
    found = db.session.scalar(_public_orgs().where(Organization.hsds_id == wanted))
    if found is not None:
        return found
    for org in db.session.scalars(_public_orgs()):
        if org_hsds_id(org) == wanted:
            return org
    return None


def taxonomies_page(search: str | None, paging: Paging, languages: Sequence[str]) -> dict[str, Any]:
    items = [taxonomy(languages)]
    if search:
        items = [t for t in items if _like(search) in _like(t["name"] + " " + t["description"])]
    return page_of(len(items), paging, _slice(items, paging))


def all_terms(languages: Sequence[str]) -> list[dict[str, Any]]:
    return [*category_terms(languages), timezone_term()]


def terms_page(
    search: str | None,
    taxonomy_id: str | None,
    parent_id: str | None,
    paging: Paging,
    languages: Sequence[str],
) -> dict[str, Any]:
    items = all_terms(languages)
    if search:
        items = [t for t in items if _like(search) in _like(t["name"] + " " + t["description"])]
    if taxonomy_id is not None:
        items = [t for t in items if t.get("taxonomy_id") == taxonomy_id]
    if parent_id is not None:
        items = []  # Haven's terms have no parents
    return page_of(len(items), paging, _slice(items, paging))


def service_at_location(service: Service) -> dict[str, Any]:
    full = service_to_hsds(service)
    sal = dict(full["service_at_locations"][0])
    sal["service"] = service_summary(service)
    return sal


def service_at_locations_page(
    flt: ServiceFilter, paging: Paging, languages: Sequence[str]
) -> dict[str, Any]:
    query = _filtered(_public(), flt, languages)
    total = _count(query)
    rows = _page_rows(query, paging, total, full=True)
    return page_of(total, paging, [service_at_location(s) for s in rows])


def public_service_at_location(wanted: str) -> Service | None:
    """The public service whose (derived) service_at_location id is ``wanted``."""
    if not is_uuid(wanted):
        return None
    for service_id, hsds_id in _public_ids():
        if sal_id(hsds_id_of(service_id, hsds_id)) == wanted:
            return _full(_public().where(Service.id == service_id))
    return None
