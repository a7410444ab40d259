"""The HSDS API under /hsds (issue 17): judged by the specification's own openapi.json
(schemathesis, in-process over WSGI) and by attempts to cross its boundaries: a service
that is not public, an intake phone, a confidential place, a cookie, too many requests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import schemathesis
from flask import session
from hypothesis import HealthCheck, given, settings
from sqlalchemy import event

from app.core.extensions import db
from app.directory.hsds_export import org_hsds_id, sal_id
from app.models import Area
from tests import factories
from tests.hsds_shared import copy_schema_folder, load

SECRET_LAT, SECRET_LON = 34.0123456, -118.6543210
PHONE = "+14155550199"
ALIAS = "Zorabelle"


def directory() -> dict[str, Any]:
    provider = factories.make_org("provider", name="Harbour Services", hsds_id="org-harbour")
    refuge = factories.make_service(
        provider,
        category="shelter",
        name="Secret Refuge",
        hsds_id="11111111-0000-4000-8000-000000000001",
        intake_phone=PHONE,
        latitude=SECRET_LAT,
        longitude=SECRET_LON,
        location_confidential=True,
        areas=[Area(name="Harbour District")],
    )
    clinic = factories.make_service(
        provider,
        category="medical",
        name="Open Clinic",
        hsds_id="11111111-0000-4000-8000-000000000002",
        intake_phone="+14155550177",
        latitude=1.5,
        longitude=2.5,
        min_age=16,
        languages="en,es",
    )
    hidden = factories.make_service(
        factories.make_org("provider", name="Closed Org", hsds_id="org-closed"),
        category="legal",
        name="Withdrawn Legal Clinic",
        hsds_id="11111111-0000-4000-8000-000000000003",
        active=False,
    )
    factories.make_referral(factories.make_case(alias=ALIAS), refuge)
    db.session.commit()
    return {"refuge": refuge, "clinic": clinic, "hidden": hidden}


def every_response(client: Any, made: dict[str, Any]) -> list[tuple[str, Any]]:
    urls = [
        "/hsds/",
        "/hsds/services",
        "/hsds/services?full=true",
        "/hsds/services?minimal=true",
        "/hsds/organizations",
        "/hsds/organizations?full=true&full_service=true",
        f"/hsds/organizations/{org_hsds_id(made['clinic'].organization)}?full_service=true",
        "/hsds/taxonomies",
        "/hsds/taxonomy_terms",
        "/hsds/service_at_locations",
        f"/hsds/service_at_locations/{sal_id(made['refuge'].hsds_id)}",
    ] + [f"/hsds/services/{s.hsds_id}" for s in made.values()]
    return [(url, client.get(url)) for url in urls]


def test_no_intake_phone_confidential_place_case_or_hidden_service_can_be_read(
    app: Any, client: Any
) -> None:
    made = directory()
    for url, response in every_response(client, made):
        text = response.get_data(as_text=True)
        assert "4155550199" not in text and "4155550177" not in text, url
        assert "34.01" not in text and "118.65" not in text, url
        assert ALIAS not in text, url
        assert "Withdrawn Legal Clinic" not in text and "Closed Org" not in text, url
    hidden = made["hidden"]
    assert client.get(f"/hsds/services/{hidden.hsds_id}").status_code == 404
    closed = org_hsds_id(hidden.organization)
    assert client.get(f"/hsds/organizations/{closed}").status_code == 404
    assert client.get(f"/hsds/service_at_locations/{sal_id(hidden.hsds_id)}").status_code == 404
    assert client.get(f"/hsds/services?organization_id={closed}").json["total_items"] == 0
    # A feed's id that is not a UUID is published as one, and found by it.
    harbour = org_hsds_id(made["clinic"].organization)
    assert harbour != "org-harbour"
    assert client.get(f"/hsds/organizations/{harbour}").json["name"] == "Harbour Services"
    assert client.get(f"/hsds/services?organization_id={harbour}").json["total_items"] == 2
    # The open clinic's place is published; the refuge is there, without its place.
    clinic = client.get(f"/hsds/services/{made['clinic'].hsds_id}").json
    assert clinic["service_at_locations"][0]["location"]["latitude"] == 1.5
    refuge = client.get(f"/hsds/services/{made['refuge'].hsds_id}").json
    assert "latitude" not in refuge["service_at_locations"][0]["location"]


def test_responses_match_the_specification_schemas(app: Any, client: Any) -> None:
    made = directory()
    one = load("schema/compiled/service.json")
    response = client.get(f"/hsds/services/{made['clinic'].hsds_id}")
    assert response.status_code == 200
    jsonschema.validate(response.json, one)
    listed = client.get("/hsds/services?per_page=1&page=2").json
    assert (listed["total_items"], listed["size"], listed["page_number"]) == (2, 1, 2)
    assert listed["last_page"] and not listed["first_page"]
    item_schema = load("schema/compiled/service_list.json")
    for item in listed["contents"]:
        jsonschema.validate(item, item_schema)
    assert client.get("/hsds/services?search=CLINIC").json["total_items"] == 1
    assert client.get("/hsds/services?search=%25").json["total_items"] == 0  # no wildcard


def test_no_cookie_is_set_even_for_a_signed_in_browser(app: Any, client: Any, auth: Any) -> None:
    directory()
    user = factories.make_user(role="caseworker")
    db.session.commit()
    auth.login(user)
    assert client.get_cookie(app.config["SESSION_COOKIE_NAME"]) is not None  # it carries one
    for url in ("/hsds/", "/hsds/services", "/hsds/services/unknown", "/hsds/services?page=0"):
        response = client.get(url)
        assert "Set-Cookie" not in response.headers, url


def test_no_cookie_even_when_something_writes_to_the_session(app_factory: Any) -> None:
    """Whatever a future hook writes to the session, the API's answers carry no cookie
    (and the rest of the app still does: the test can tell)."""
    fresh = app_factory()

    @fresh.before_request
    def touch() -> None:
        session["touched"] = True

    client = fresh.test_client()
    assert "Set-Cookie" in client.get("/healthz").headers
    for url in ("/hsds/", "/hsds/services", "/hsds/taxonomies", "/hsds/services/nope"):
        assert "Set-Cookie" not in client.get(url).headers, url


def test_etag_and_not_modified(app: Any, client: Any) -> None:
    directory()
    first = client.get("/hsds/services")
    assert first.status_code == 200 and first.headers["ETag"]
    assert "public" in first.headers["Cache-Control"]
    again = client.get("/hsds/services", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.get_data() == b""
    changed = client.get("/hsds/services?per_page=1")
    assert changed.headers["ETag"] != first.headers["ETag"]


def test_rate_limited_per_address(app_factory: Any) -> None:
    limited = app_factory(HSDS_API_RATE_PER_MINUTE=3)
    client = limited.test_client()
    codes = [client.get("/hsds/").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    refused = client.get("/hsds/services")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    other = client.get("/hsds/", environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert other.status_code == 200  # another address is not held back


@pytest.mark.parametrize(
    "query",
    [
        "page=0",
        "page=abc",
        "per_page=0",
        "per_page=100000",
        "full=maybe",
        "modified_after=yesterday",
        "format=xml",
        "search=" + "x" * 500,
    ],
)
def test_bad_parameters_are_a_400_naming_them(app: Any, client: Any, query: str) -> None:
    response = client.get(f"/hsds/services?{query}")
    assert response.status_code == 400
    assert query.split("=")[0] in response.json["error"]


def test_a_page_past_the_end_is_empty_not_an_error(app: Any, client: Any) -> None:
    directory()
    response = client.get(f"/hsds/services?page={10**30}")
    assert response.status_code == 200 and response.json["contents"] == []


def test_a_page_costs_the_same_queries_for_5_or_50_services(app: Any, client: Any) -> None:
    org = factories.make_org("provider")
    for i in range(60):
        factories.make_service(org, category="legal", name=f"S{i}", areas=[Area(name=f"A{i}")])
    db.session.commit()

    def queries(url: str) -> int:
        seen: list[str] = []

        def count(*args: Any) -> None:
            seen.append(args[2])

        event.listen(db.engine, "before_cursor_execute", count)
        try:
            assert client.get(url).status_code == 200
        finally:
            event.remove(db.engine, "before_cursor_execute", count)
        return len(seen)

    for full in ("false", "true"):
        small = queries(f"/hsds/services?per_page=5&full={full}")
        large = queries(f"/hsds/services?per_page=50&full={full}")
        assert small == large, full
        assert large <= 6


# --- conformance with the official description -------------------------------------------

CHECKS = ("not_a_server_error", "response_schema_conformance", "content_type_conformance")
EXAMPLES = settings(
    max_examples=6,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


def test_schemathesis_against_the_official_openapi(app: Any, tmp_path: Path) -> None:
    """Every operation of schema/openapi.json, with generated parameters (a few examples
    each), judged by schemathesis' response checks against the official description."""
    made = directory()
    folder = copy_schema_folder(tmp_path)
    schema = schemathesis.openapi.from_path(folder / "openapi.local.json")
    schema.app = app
    checks = [getattr(schemathesis.checks, name) for name in CHECKS]
    known = {
        "id": [made["clinic"].hsds_id, made["refuge"].hsds_id,
               org_hsds_id(made["clinic"].organization),
               sal_id(made["clinic"].hsds_id)],
    }
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 11
    seen: dict[str, int] = {}
    for operation in operations:

        @EXAMPLES
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            response = case.call_and_validate(base_url="http://localhost/hsds", checks=checks)
            seen[case.operation.label] = seen.get(case.operation.label, 0) + 1
            assert "Set-Cookie" not in response.headers

        run()
        # And the ids that exist (generated ids are almost never one): real 200 bodies.
        if "{id}" in operation.path:
            for value in known["id"]:
                case = operation.Case(path_parameters={"id": value})
                case.call_and_validate(base_url="http://localhost/hsds", checks=checks)
    assert len(seen) == len(operations)


def test_meta_names_the_version_and_the_official_description(app: Any, client: Any) -> None:
    body = client.get("/hsds/").json
    assert body["version"].startswith("3.0")
    assert body["openapi_url"].endswith("openapi.json")
    assert json.loads(json.dumps(body)) == body
