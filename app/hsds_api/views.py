"""HSDS API views: parse the query, call ``pages``, answer JSON.

Every response: JSON, an ETag (a hash of the body; ``If-None-Match`` gets 304), public
caching for a minute, and no cookie (``app.security.CookielessSessions`` never saves a
session for these endpoints). A bad parameter is a 400
naming it, an unknown or non-public id a 404, too many requests a 429 with Retry-After.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, current_app, request
from werkzeug.wrappers import Response

from app.hsds_api import pages
from app.hsds_api.ratelimit import WindowLimiter

bp = Blueprint("hsds_api", __name__)

HSDS_VERSION = "3.0.0"
PROFILE = "https://docs.openreferral.org/en/v3.0/hsds/"
OPENAPI_URL = (
    "https://raw.githubusercontent.com/openreferral/specification/3.0/schema/openapi.json"
)
TRUE, FALSE = frozenset({"true", "1", "yes"}), frozenset({"false", "0", "no"})
MAX_PARAM_CHARS = 200


def _json(data: Any, status: int = 200) -> Response:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    response = Response(body, status=status, mimetype="application/json")
    if status == 200:
        response.set_etag(hashlib.sha256(body).hexdigest()[:32])
        response.headers["Cache-Control"] = "public, max-age=60"
        response.make_conditional(request)
    else:
        response.headers["Cache-Control"] = "no-store"
    return response


def _error(status: int, message: str) -> Response:
    return _json({"error": message}, status)


def _limiter() -> WindowLimiter:
    limiter = current_app.extensions.get("hsds_api_limiter")
    if limiter is None:
        limiter = current_app.extensions.setdefault(
            "hsds_api_limiter", WindowLimiter(current_app.config["HSDS_API_RATE_PER_MINUTE"])
        )
    return limiter  # type: ignore[no-any-return]


@bp.before_request
def rate_limit() -> Response | None:
    allowed, retry_after = _limiter().allow(request.remote_addr or "-")
    if not allowed:
        response = _error(429, "too many requests: wait and try again")
        response.headers["Retry-After"] = str(retry_after)
        return response
    return None


# --- parameters --------------------------------------------------------------------------


def _text(name: str) -> str | None:
    value = request.args.get(name)
    if value is None:
        return None
    if len(value) > MAX_PARAM_CHARS:
        raise pages.BadParameter(f"{name} is longer than {MAX_PARAM_CHARS} characters")
    return value


def _flag(name: str) -> bool:
    value = request.args.get(name)
    if value is None:
        return False
    if value.lower() in TRUE:
        return True
    if value.lower() in FALSE:
        return False
    raise pages.BadParameter(f"{name} must be true or false")


def _positive(name: str, default: int, most: int | None = None) -> int:
    value = request.args.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise pages.BadParameter(f"{name} must be a whole number") from None
    if number < 1:
        raise pages.BadParameter(f"{name} must be 1 or more")
    if most is not None and number > most:
        raise pages.BadParameter(f"{name} must be at most {most}")
    return number


def _paging() -> pages.Paging:
    fmt = request.args.get("format")
    if fmt not in (None, "", "json"):
        raise pages.BadParameter("format: only json is served")
    return pages.Paging(
        page=min(_positive("page", 1), 10**9),
        per_page=_positive("per_page", pages.DEFAULT_PER_PAGE, pages.MAX_PER_PAGE),
    )


def _when(name: str) -> datetime | None:
    value = _text(name)
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise pages.BadParameter(f"{name} must be an ISO 8601 date and time") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _service_filter() -> pages.ServiceFilter:
    return pages.ServiceFilter(
        search=_text("search") or None,
        taxonomy_term_id=_text("taxonomy_term_id"),
        taxonomy_id=_text("taxonomy_id"),
        organization_id=_text("organization_id"),
        modified_after=_when("modified_after"),
    )


def _languages() -> list[str]:
    return list(current_app.config["LANGUAGES"])


@bp.errorhandler(pages.BadParameter)
def bad_parameter(error: pages.BadParameter) -> Response:
    return _error(400, str(error))


def _not_found(what: str) -> Response:
    return _error(404, f"no public {what} with that id")


# --- views -------------------------------------------------------------------------------


@bp.get("/", endpoint="meta")
def meta() -> Response:
    return _json({"version": HSDS_VERSION, "profile": PROFILE, "openapi_url": OPENAPI_URL})


@bp.get("/services", endpoint="services")
def services() -> Response:
    return _json(
        pages.services_page(
            _service_filter(),
            _paging(),
            _languages(),
            full=_flag("full"),
            minimal=_flag("minimal"),
        )
    )


@bp.get("/services/<hsds_key>", endpoint="service")
def service(hsds_key: str) -> Response:
    found = pages.public_service(hsds_key) if len(hsds_key) <= 64 else None
    return _json(pages.service_full(found)) if found else _not_found("service")


@bp.get("/organizations", endpoint="organizations")
def organizations() -> Response:
    return _json(
        pages.organizations_page(
            _text("search") or None,
            _paging(),
            full=_flag("full"),
            full_service=_flag("full_service"),
        )
    )


@bp.get("/organizations/<hsds_key>", endpoint="organization")
def organization(hsds_key: str) -> Response:
    full_service = _flag("full_service")
    found = pages.public_organization(hsds_key) if len(hsds_key) <= 64 else None
    if found is None:
        return _not_found("organization")
    offered = pages.services_of([found.id]).get(found.id, [])
    return _json(pages.organization_json(found, offered, full_service))


@bp.get("/taxonomies", endpoint="taxonomies")
def taxonomies() -> Response:
    return _json(pages.taxonomies_page(_text("search"), _paging(), _languages()))


@bp.get("/taxonomies/<hsds_key>", endpoint="taxonomy")
def taxonomy(hsds_key: str) -> Response:
    for item in pages.taxonomies_page(None, pages.Paging(), _languages())["contents"]:
        if item["id"] == hsds_key:
            return _json(item)
    return _not_found("taxonomy")


@bp.get("/taxonomy_terms", endpoint="taxonomy_terms")
def taxonomy_terms() -> Response:
    _flag("top_only")  # every term of Haven's is a top term: checked, changes nothing
    return _json(
        pages.terms_page(
            _text("search"),
            _text("taxonomy_id"),
            _text("parent_id"),
            _paging(),
            _languages(),
        )
    )


@bp.get("/taxonomy_terms/<hsds_key>", endpoint="taxonomy_term")
def taxonomy_term(hsds_key: str) -> Response:
    for term in pages.all_terms(_languages()):
        if term["id"] == hsds_key:
            return _json(term)
    return _not_found("taxonomy term")


@bp.get("/service_at_locations", endpoint="service_at_locations")
def service_at_locations() -> Response:
    _flag("full")
    for ignored in ("postcode", "proximity"):
        _text(ignored)  # Haven has no postcodes: accepted and not applied
    return _json(pages.service_at_locations_page(_service_filter(), _paging(), _languages()))


@bp.get("/service_at_locations/<hsds_key>", endpoint="service_at_location")
def service_at_location(hsds_key: str) -> Response:
    found = pages.public_service_at_location(hsds_key) if len(hsds_key) <= 64 else None
    if found is None:
        return _not_found("service at location")
    # The 3.0 description gives this operation the schema of a service (3.1 corrects it to
    # service_at_location): the fully nested service_at_location also carries its
    # service's name and status, so it is valid under both.
    body = pages.service_at_location(found)
    body["name"], body["status"] = body["service"]["name"], body["service"]["status"]
    return _json(body)
