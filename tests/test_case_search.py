"""Finding a case (issue 16): reference code, alias (sealed, unsealed in memory), phone number
(blind index); organization-scoped; the query never reaches a log or the database."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import func, select

from app.cases import search as case_search
from app.core.extensions import db
from app.models import AuditEvent, Case
from tests import factories
from tests.conftest import login_session


@pytest.fixture
def worker(app, client):
    user = factories.make_user("caseworker")
    db.session.commit()
    login_session(client, user)
    return user


def _search(client, query: str):
    return client.post("/cases/", data={"q": query})


def test_alias_search_ignores_case_and_accents_and_finds_every_word(worker, client):
    org = worker.organization
    maria = factories.make_case(org, alias="María García")
    factories.make_case(org, alias="Marianne")
    factories.make_case(org, alias="Rosa")
    db.session.commit()
    found = _search(client, "MARIA garcia")
    assert found.status_code == 302 and found.headers["Location"].endswith(f"/cases/{maria.id}")
    page = _search(client, "mari")
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "María García" in text and "Marianne" in text and "Rosa" not in text
    assert "2 cases found." in text


def test_alias_search_only_reads_open_cases(worker, client):
    org = worker.organization
    factories.make_case(org, alias="Closed Zainab", status="closed")
    db.session.commit()
    page = _search(client, "zainab").get_data(as_text=True)
    assert "Closed Zainab" not in page and "0 cases found." in page


def test_search_never_crosses_organizations(worker, client):
    other = factories.make_org()
    theirs = factories.make_case(other, alias="Leila Other", phone="+14155550199")
    factories.make_case(worker.organization, alias="Someone", phone="+14155550100")
    db.session.commit()
    for query in ("Leila", "+1 415 555 0199", theirs.reference):
        response = _search(client, query)
        text = response.get_data(as_text=True)
        assert response.status_code == 200, query
        assert "Leila Other" not in text and f"/cases/{theirs.id}" not in text, query
    # In the domain function as well: the other organization's id finds it, ours does not.
    assert case_search.find_cases(other.id, "leila", phone_region="US").cases == [theirs]
    assert case_search.find_cases(worker.organization_id, "leila", phone_region="US").cases == []


def test_phone_search_uses_the_organizations_region_and_exact_number(worker, client):
    org = worker.organization
    org.phone_region = "FR"
    case = factories.make_case(org, alias="Amel", phone="+33612345678")
    factories.make_case(org, alias="Other", phone="+33612345679")
    db.session.commit()
    found = _search(client, "06 12 34 56 78")
    assert found.status_code == 302 and found.headers["Location"].endswith(f"/cases/{case.id}")
    # A prefix is not a number: nothing, not a partial match.
    prefix = _search(client, "06 12 34 56")
    assert prefix.status_code == 400 and b"Amel" not in prefix.data


def test_phone_search_finds_closed_cases_but_not_erased(worker, client):
    org = worker.organization
    closed = factories.make_case(org, alias="Nadia", phone="+14155550142", status="closed")
    db.session.commit()
    result = case_search.find_cases(org.id, "(415) 555-0142", phone_region="US")
    assert result.kind == "phone" and result.cases == [closed]


def test_reference_search_still_works_typed_loosely(worker, client):
    case = factories.make_case(worker.organization, alias="Ref Case")
    db.session.commit()
    found = client.get("/cases/?q=" + case.reference.lower().replace("-", ""))
    assert found.status_code == 302 and found.headers["Location"].endswith(f"/cases/{case.id}")
    posted = _search(client, case.reference.lower())
    assert posted.status_code == 302


def test_reference_shaped_alias_falls_back_to_alias_search(worker, client):
    case = factories.make_case(worker.organization, alias="Samera")  # SAMERA fits a code
    db.session.commit()
    found = _search(client, "samera")
    assert found.status_code == 302 and found.headers["Location"].endswith(f"/cases/{case.id}")


@pytest.mark.parametrize("query", ["", "   ", "<>", "!!!", "x" * 65])
def test_unsearchable_queries_get_a_field_error(worker, client, query):
    response = _search(client, query)
    assert response.status_code == 400
    assert b'aria-invalid="true"' in response.data and b'id="q-error"' in response.data


def test_phone_shaped_nonsense_gets_a_field_error(worker, client):
    response = _search(client, "000000")
    assert response.status_code == 400 and b"country code" in response.data


def test_query_is_not_logged_stored_or_audited(worker, client, caplog):
    factories.make_case(worker.organization, alias="Unique Yasmin", phone="+14155550177")
    db.session.commit()
    before = db.session.scalar(select(func.count()).select_from(AuditEvent))
    with caplog.at_level(logging.DEBUG):
        for query in ("Yasmin", "+14155550177", "nobody-here Zq"):
            _search(client, query)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for secret in ("Yasmin", "yasmin", "4155550177", "nobody-here"):
        assert secret not in logged
    events = db.session.scalars(select(AuditEvent)).all()
    assert len(events) > before
    assert any(e.action == "case.search" for e in events)
    assert not any("asmin" in repr(vars(e)) for e in events)


def test_alias_search_skips_a_case_whose_key_is_gone(worker, client):
    org = worker.organization
    kept = factories.make_case(org, alias="Huda One")
    broken = factories.make_case(org, alias="Huda Two")
    broken.data_key.wrapped = b"not a fernet token"
    db.session.commit()
    result = case_search.find_cases(org.id, "huda", phone_region="US")
    assert result.cases == [kept]
    assert db.session.scalar(select(func.count()).select_from(Case)) == 2
