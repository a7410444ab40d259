"""The consent-first intake flow through the real views, the case list and page, and the
rules on bad input, double submission and other organizations."""

from __future__ import annotations

import base64
import struct
import zlib

import pytest
from sqlalchemy import func, select

from app.consent import service as consent
from app.core.extensions import db
from app.models import AnonymousContact, AuditEvent, Case, Consent, ConsentSignature, Need
from tests import factories
from tests.conftest import login_session

TOKEN = "tok_" + "a" * 30


def png_data_url(width: int = 60, height: int = 20) -> str:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"\xff" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return "data:image/png;base64," + base64.b64encode(png).decode()


def consent_form(store: str = "yes", method: str = "verbal", token: str = TOKEN, **extra):
    data = {
        "token": token, "language": "en", "text_version": consent.CURRENT_VERSION,
        "method": method, "scope_store": store,
    }
    for scope in factories.ALL_CONSENT_SCOPES[1:]:
        data[f"scope_{scope}"] = "yes"
    data.update(extra)
    return data


def profile_form(area: int, **extra):
    data = {
        "alias": "Mira", "phone": "(415) 555-0199", "language": "es", "age_band": "18_24",
        "gender": "", "area_id": str(area), "children_accompanying": "1",
        "safe_hours-0-days": ["0", "1", "2", "3", "4"], "safe_hours-0-start": "18:00",
        "safe_hours-0-end": "21:00", "no_voicemail": "y", "note": "speaks slowly",
    }
    data.update(extra)
    return data


@pytest.fixture
def worker(app, client):
    user = factories.make_user("caseworker")
    area = factories.make_area("Harbour")
    db.session.commit()
    login_session(client, user)
    return user, area


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def test_consent_step_comes_first_and_shows_texts(worker, client):
    response = client.get("/cases/new")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "May we keep a record about you" in page
    assert 'name="alias"' not in page  # nothing identifying can be typed here
    assert 'autocomplete="off"' in page
    assert "localStorage" not in page
    assert 'name="token"' in page


def test_full_intake_with_store_consent(worker, client):
    user, area = worker
    response = client.post("/cases/new", data=consent_form())
    assert response.status_code == 302
    case = db.session.scalar(select(Case))
    assert response.headers["Location"].endswith(f"/cases/{case.id}/profile")
    assert case.alias is None and case.organization_id == user.organization_id
    assert len(case.reference) == 7 and case.reference[3] == "-"
    assert not set(case.reference) & set("01OIL")
    assert count(Consent) == len(factories.ALL_CONSENT_SCOPES)

    page = client.get(f"/cases/{case.id}/profile").get_data(as_text=True)
    assert 'autocomplete="off"' in page
    response = client.post(f"/cases/{case.id}/profile", data=profile_form(area.id))
    assert response.status_code == 302, response.get_data(as_text=True)
    db.session.expire_all()
    case = db.session.get(Case, case.id)
    assert case.alias == "Mira" and case.phone == "+14155550199"
    assert case.safe_hours == '[{"days":[0,1,2,3,4],"from":"18:00","to":"21:00"}]'
    assert case.no_voicemail and not case.do_not_text and not case.safe_hours_check
    assert case.phone_index and len(case.phone_index) == 64

    needs_page = client.get(f"/cases/{case.id}/needs").get_data(as_text=True)
    assert "+1 415-555-0199" in needs_page  # shown back formatted
    response = client.post(f"/cases/{case.id}/needs",
                           data={"need_shelter": "immediate", "need_legal": "soon"})
    assert response.status_code == 302
    assert {(n.category, n.urgency) for n in db.session.scalars(select(Need))} == {
        ("shelter", "immediate"), ("legal", "soon")}

    page = client.get(f"/cases/{case.id}").get_data(as_text=True)
    assert "Mira" in page and case.reference in page and "consent.grant" in page
    actions = set(db.session.scalars(select(AuditEvent.action)))
    assert {"case.create", "consent.grant", "case.profile_update", "case.needs_update",
            "case.view"} <= actions


def test_refusing_store_keeps_only_an_anonymous_count(worker, client):
    _user, area = worker
    response = client.post("/cases/new", data=consent_form(store="no"))
    assert response.status_code == 302
    assert "/cases/anonymous" in response.headers["Location"]
    assert count(Case) == 0 and count(Consent) == 0
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert TOKEN in page
    data = {"token": TOKEN, "area_id": str(area.id), "needs": ["shelter", "medical"]}
    assert client.post("/cases/anonymous", data=data).status_code == 200
    assert client.post("/cases/anonymous", data=data).status_code == 200  # resent
    rows = db.session.scalars(select(AnonymousContact)).all()
    assert len(rows) == 1
    assert rows[0].need_categories == "shelter,medical" and rows[0].area_id == area.id
    assert count(Case) == 0


def test_written_consent_needs_a_valid_signature_sealed_with_the_case_key(worker, client):
    response = client.post("/cases/new", data=consent_form(method="written"))
    assert response.status_code == 400 and b"sign in the box" in response.data
    assert count(Case) == 0
    bad = "data:image/png;base64," + base64.b64encode(b"<script>alert(1)</script>").decode()
    response = client.post("/cases/new", data=consent_form(method="written", signature=bad))
    assert response.status_code == 400 and count(Case) == 0
    response = client.post("/cases/new",
                           data=consent_form(method="written", signature=png_data_url()))
    assert response.status_code == 302
    case = db.session.scalar(select(Case))
    sig = db.session.scalar(select(ConsentSignature))
    assert sig.data_key_id == case.data_key_id is not None
    assert sig.image == png_data_url() and b"PNG" not in bytes(sig.image_enc)
    assert all(c.signature_id == sig.id for c in db.session.scalars(select(Consent)))


@pytest.mark.both_databases
def test_double_submission_makes_one_case(worker, client):
    first = client.post("/cases/new", data=consent_form())
    second = client.post("/cases/new", data=consent_form())
    assert first.status_code == second.status_code == 302
    assert first.headers["Location"] == second.headers["Location"]
    assert count(Case) == 1
    assert count(Consent) == len(factories.ALL_CONSENT_SCOPES)


def test_a_token_of_another_organization_is_refused(worker, client, app):
    other = factories.make_org()
    from app.cases import service as cases

    cases.create_case(other.id, None, idempotency_key=TOKEN, language="en")
    db.session.commit()
    response = client.post("/cases/new", data=consent_form())
    assert response.status_code == 400
    assert b"out of date" in response.data
    assert count(Case) == 1 and count(Consent) == 0


@pytest.mark.parametrize(("field", "value"), [
    ("token", "short"),
    ("token", ""),
    ("language", "xx"),
    ("text_version", "1999-01"),
    ("method", "telepathy"),
    ("scope_store", "maybe"),
    ("scope_share_legal", "<script>"),
])
def test_tampered_consent_step_stores_nothing(worker, client, field, value):
    response = client.post("/cases/new", data=consent_form(**{field: value}))
    assert response.status_code == 400
    assert b'class="error' in response.data
    assert count(Case) == 0 and count(Consent) == 0


def test_missing_consent_step_answer(worker, client):
    data = consent_form()
    del data["scope_store"]
    response = client.post("/cases/new", data=data)
    assert response.status_code == 400 and b"choose yes or no" in response.data
    assert count(Case) == 0


def test_profile_refused_without_store_consent(worker, client):
    user, area = worker
    case = factories.make_case(user.organization, consents={"store": False}, alias=None,
                               phone=None, note=None, needs={})
    case.profile_completed_at = None
    db.session.commit()
    response = client.post(f"/cases/{case.id}/profile", data=profile_form(area.id))
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/cases/{case.id}/consent")
    db.session.expire_all()
    assert db.session.get(Case, case.id).alias_enc is None
    assert client.post(f"/cases/{case.id}/needs", data={"need_legal": "soon"}).status_code == 302
    assert count(Need) == 0


def test_expired_store_consent_counts_as_withdrawn_in_views(worker, client):
    from datetime import timedelta

    from app.models import utcnow

    user, _area = worker
    case = factories.make_case(user.organization, at=utcnow() - timedelta(days=400))
    db.session.commit()
    assert client.get(f"/cases/{case.id}/export").status_code == 403
    assert client.get(f"/cases/{case.id}/profile").status_code == 302
    page = client.get(f"/cases/{case.id}").get_data(as_text=True)
    assert "Expired" in page


@pytest.mark.parametrize(("changes", "field"), [
    ({"phone": "12345"}, "phone"),
    ({"phone": "+1 415 CALL NOW"}, "phone"),
    ({"area_id": "999999"}, "area_id"),
    ({"area_id": "north"}, "area_id"),
    ({"alias": "x" * 61}, "alias"),
    ({"alias": "<script>alert(1)</script>"}, "alias"),
    ({"note": "<img src=x onerror=alert(1)>"}, "note"),
    ({"alias": ""}, "alias"),
    ({"age_band": "ancient"}, "age_band"),
    ({"language": "klingon"}, "language"),
    ({"children_accompanying": "-3"}, "children_accompanying"),
    ({"note": "n" * 501}, "note"),
])
def test_bad_profile_input_rerenders_with_field_errors(worker, client, changes, field):
    _user, area = worker
    client.post("/cases/new", data=consent_form())
    case = db.session.scalar(select(Case))
    response = client.post(f"/cases/{case.id}/profile", data=profile_form(area.id, **changes))
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert f'id="{field}-error"' in page
    assert "<script>alert(1)</script>" not in page
    db.session.expire_all()
    case = db.session.get(Case, case.id)
    assert case.alias_enc is None and case.phone_index is None and case.data_key_id is None


def test_valid_phone_is_shown_back_formatted_when_other_fields_fail(worker, client):
    _user, area = worker
    client.post("/cases/new", data=consent_form())
    case = db.session.scalar(select(Case))
    response = client.post(f"/cases/{case.id}/profile",
                           data=profile_form(area.id, phone="4155550199", alias=""))
    assert response.status_code == 400
    assert "+1 415-555-0199" in response.get_data(as_text=True)


def test_bad_needs_input(worker, client):
    user, _area = worker
    case = factories.make_case(user.organization, needs={})
    db.session.commit()
    response = client.post(f"/cases/{case.id}/needs", data={"need_shelter": "yesterday"})
    assert response.status_code == 400 and b"need_shelter-error" in response.data
    assert count(Need) == 0


def test_anonymous_mode_bad_input(worker, client):
    response = client.post("/cases/anonymous", data={"token": "x", "needs": ["weapons"]})
    assert response.status_code == 400
    assert count(AnonymousContact) == 0


def test_case_list_tabs_and_reference_search(worker, client):
    user, _area = worker
    open_case = factories.make_case(user.organization, alias="Open One")
    closed = factories.make_case(user.organization, alias="Closed One", status="closed")
    sms = factories.make_case(user.organization, alias=None, channel="sms")
    sms.profile_completed_at = None
    other = factories.make_case(factories.make_org(), alias="Elsewhere")
    db.session.commit()
    page = client.get("/cases/?tab=open").get_data(as_text=True)  # "mine" is the default
    assert "Open One" in page and "Closed One" not in page and "Elsewhere" not in page
    assert "Closed One" in client.get("/cases/?tab=closed").get_data(as_text=True)
    sms_page = client.get("/cases/?tab=sms").get_data(as_text=True)
    assert sms.reference in sms_page and open_case.reference not in sms_page
    found = client.get("/cases/?q=" + open_case.reference.lower().replace("-", ""))
    assert found.status_code == 302 and found.headers["Location"].endswith(f"/cases/{open_case.id}")
    missing = client.get("/cases/?q=" + other.reference)
    assert missing.status_code == 200 and "Elsewhere" not in missing.get_data(as_text=True)
    bad = client.get("/cases/?q=<>")
    assert bad.status_code == 400 and b'id="q-error"' in bad.data
    assert closed.id


def test_other_organizations_case_answers_404(worker, client):
    other_case = factories.make_case(factories.make_org())
    db.session.commit()
    for path in ("", "/profile", "/needs", "/consent", "/export", "/export.json", "/erase"):
        assert client.get(f"/cases/{other_case.id}{path}").status_code == 404, path
    for path in ("/close", "/reopen", "/erase", "/consent", "/profile"):
        assert client.post(f"/cases/{other_case.id}{path}").status_code == 404, path
    db.session.expire_all()
    assert db.session.get(Case, other_case.id).status == "open"


@pytest.mark.parametrize(
    ("role", "status"), [("provider", 403), ("admin", 403), ("supervisor", 200)]
)
def test_roles(app, client, role, status):
    user = factories.make_user(role)
    case = factories.make_case(user.organization)
    db.session.commit()
    login_session(client, user)
    assert client.get("/cases/").status_code == status
    assert client.get(f"/cases/{case.id}").status_code == status
    assert client.get("/cases/new").status_code == status


def test_close_reopen_and_retention_due(worker, client, app):
    user, _area = worker
    case = factories.make_case(user.organization)
    db.session.commit()
    assert client.post(f"/cases/{case.id}/close", data={"reason": "goals_met"}).status_code == 302
    db.session.expire_all()
    case = db.session.get(Case, case.id)
    assert case.status == "closed" and case.close_reason == "goals_met"
    assert case.retention_due_at - case.closed_at == app.config["CASE_RETENTION_AFTER_CLOSE"]
    assert client.post(f"/cases/{case.id}/reopen").status_code == 302
    db.session.expire_all()
    case = db.session.get(Case, case.id)
    assert case.status == "open" and case.retention_due_at is None


def test_change_consent_page(worker, client):
    user, _area = worker
    case = factories.make_case(user.organization)
    db.session.commit()
    page = client.get(f"/cases/{case.id}/consent").get_data(as_text=True)
    assert "May we ask legal aid services" in page
    data = {"language": "en", "text_version": consent.CURRENT_VERSION, "method": "verbal",
            "scope": "share_legal", "decision": "withdraw"}
    assert client.post(f"/cases/{case.id}/consent", data=data).status_code == 302
    db.session.expire_all()
    case = db.session.get(Case, case.id)
    assert not consent.permits(case, "share:legal") and consent.permits(case, "share:shelter")
    # store withdrawal needs the explicit confirmation, then erases
    data.update(scope="store")
    response = client.post(f"/cases/{case.id}/consent", data=data)
    assert response.status_code == 400 and b"confirm_erase-error" in response.data
    assert db.session.get(Case, case.id).status == "open"
    data.update(confirm_erase="y")
    assert client.post(f"/cases/{case.id}/consent", data=data).status_code == 302
    db.session.expire_all()
    assert db.session.get(Case, case.id).status == "erased"


def test_export_html_and_json_are_audited(worker, client):
    user, _area = worker
    case = factories.make_case(user.organization, alias="Nadia", phone="+442071838750")
    db.session.commit()
    page = client.get(f"/cases/{case.id}/export").get_data(as_text=True)
    assert "Nadia" in page and "+44 20 7183 8750" in page
    response = client.get(f"/cases/{case.id}/export.json")
    assert response.status_code == 200 and "attachment" in response.headers["Content-Disposition"]
    data = response.get_json()
    assert data["profile"]["alias"] == "Nadia" and data["needs"][0]["category"] == "shelter"
    assert data["consent_now"]["store"] is True and len(data["consent_history"]) == 9
    actions = list(db.session.scalars(select(AuditEvent.action)))
    assert "case.export" in actions and "case.export_json" in actions
    # no PII in the audit trail
    for event in db.session.scalars(select(AuditEvent)):
        assert "Nadia" not in repr(vars(event)) and "2071838750" not in repr(vars(event))


def test_erase_now_needs_confirmation(worker, client):
    user, _area = worker
    case = factories.make_case(user.organization)
    db.session.commit()
    assert client.get(f"/cases/{case.id}/erase").status_code == 200
    response = client.post(f"/cases/{case.id}/erase", data={"reference": "AAA-AAA"})
    assert response.status_code == 400
    assert db.session.get(Case, case.id).status == "open"
    response = client.post(f"/cases/{case.id}/erase", data={"reference": case.reference})
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(Case, case.id).status == "erased"
    assert client.get(f"/cases/{case.id}").status_code == 200
    assert client.get(f"/cases/{case.id}/export").status_code == 404


def test_csrf_is_enforced_on_intake(app_factory, app):
    csrf_app = app_factory(WTF_CSRF_ENABLED=True)
    client = csrf_app.test_client()
    with csrf_app.app_context():
        user = factories.make_user("caseworker")
        db.session.commit()
        login_session(client, user)
        response = client.post("/cases/new", data=consent_form())
        assert response.status_code == 400
        assert db.session.scalar(select(func.count(Case.id))) == 0
        db.session.remove()


def test_sms_case_profile_keeps_the_hotline_phone(worker, client):
    """A hotline case has a phone but no profile: the form starts from it, so saving the
    profile cannot drop the number the survivor texted from."""
    user, area = worker
    case = factories.make_case(user.organization, alias=None, channel="sms", needs={})
    case.profile_completed_at = None
    db.session.commit()
    assert case.reference in client.get("/cases/?tab=sms").get_data(as_text=True)
    page = client.get(f"/cases/{case.id}/profile").get_data(as_text=True)
    assert "+1 415-555-0123" in page
    data = profile_form(area.id, phone="+1 415-555-0123")
    assert client.post(f"/cases/{case.id}/profile", data=data).status_code == 302
    db.session.expire_all()
    case = db.session.get(Case, case.id)
    assert case.phone == "+14155550123" and case.phone_index
    assert case.reference not in client.get("/cases/?tab=sms").get_data(as_text=True)


def test_consent_texts_are_shown_and_recorded_in_the_survivors_language(worker, client):
    page = client.get("/cases/new?lang=es").get_data(as_text=True)
    texts, shown = consent.texts_for("es")
    assert shown == "es", "compile the catalogs: make translations-compile"
    assert texts["store"] in page and 'lang="es"' in page
    client.post("/cases/new", data=consent_form(language="es"))
    assert {c.language for c in db.session.scalars(select(Consent))} == {"es"}
    # a language without a translation is shown in English, and the record says so
    client.post("/cases/new", data=consent_form(language="sw", token="tok_" + "b" * 30))
    case = db.session.scalar(select(Case).where(Case.language == "sw"))
    assert {c.language for c in db.session.scalars(
        select(Consent).where(Consent.case_id == case.id))} == {"en"}


def test_demo_seed_hook_makes_a_tablet_case_and_an_sms_queue_case(app):
    from app.cases.seed import seed_cases

    org = factories.make_org(name="Safe Harbor Network")
    factories.make_user("caseworker", organization=org)
    factories.make_area()
    seed_cases({"Safe Harbor Network": org})
    db.session.commit()
    rows = {c.channel: c for c in db.session.scalars(select(Case))}
    assert set(rows) == {"tablet", "sms"}
    assert consent.permits(rows["tablet"], "share:shelter")
    assert not consent.permits(rows["tablet"], "sms_explicit")
    assert rows["sms"].profile_completed_at is None and rows["sms"].phone_index


def test_no_survivor_data_in_the_session_cookie_or_browser_storage(worker, client):
    _user, area = worker
    client.post("/cases/new", data=consent_form())
    case = db.session.scalar(select(Case))
    client.post(f"/cases/{case.id}/profile", data=profile_form(area.id, alias="Wanjiru"))
    client.post(f"/cases/{case.id}/needs", data={"need_medical": "soon"})
    with client.session_transaction() as sess:
        stored = repr(dict(sess))
    assert "Wanjiru" not in stored and "5550199" not in stored and "after 6pm" not in stored
    cookie = client.get_cookie("haven_session")
    assert cookie is not None and "Wanjiru" not in cookie.value
    with open(client.application.static_folder + "/signature.js", encoding="utf-8") as fh:
        script = fh.read()
    assert "localStorage" not in script and "sessionStorage" not in script
    for path in ("/cases/new", f"/cases/{case.id}/profile", f"/cases/{case.id}"):
        response = client.get(path)
        assert response.headers["Cache-Control"] == "no-store"
        assert "<script>" not in response.get_data(as_text=True)


@pytest.mark.parametrize("changes", [
    {"language": "xx"}, {"text_version": "0"}, {"scope": "everything"},
    {"decision": "maybe"}, {"method": "written"}, {"method": "written", "signature": "data:,x"},
])
def test_tampered_change_consent_form_changes_nothing(worker, client, changes):
    user, _area = worker
    case = factories.make_case(user.organization)
    db.session.commit()
    before = count(Consent)
    data = {"language": "en", "text_version": consent.CURRENT_VERSION, "method": "verbal",
            "scope": "share_legal", "decision": "withdraw", **changes}
    response = client.post(f"/cases/{case.id}/consent", data=data)
    assert response.status_code == 400 and b'class="error' in response.data
    assert count(Consent) == before


def test_resent_consent_change_and_erase_are_harmless(worker, client):
    user, _area = worker
    case = factories.make_case(user.organization)
    db.session.commit()
    before = count(Consent)
    data = {"language": "en", "text_version": consent.CURRENT_VERSION, "method": "verbal",
            "scope": "share_medical", "decision": "withdraw"}
    assert client.post(f"/cases/{case.id}/consent", data=data).status_code == 302
    assert client.post(f"/cases/{case.id}/consent", data=data).status_code == 302
    assert count(Consent) == before + 1
    erase = {"reference": case.reference}
    assert client.post(f"/cases/{case.id}/erase", data=erase).status_code == 302
    second = client.post(f"/cases/{case.id}/erase", data=erase)
    assert second.status_code == 302 and second.headers["Location"].endswith(f"/cases/{case.id}")
    assert db.session.scalar(select(func.count(AuditEvent.id)).where(
        AuditEvent.action == "case.erase")) == 1


def test_case_list_pages(worker, client, monkeypatch):
    from app.cases import views as routes

    user, area = worker
    monkeypatch.setattr(routes, "PAGE_SIZE", 2)
    made = [factories.make_case(user.organization, area=area, needs={}) for _ in range(3)]
    db.session.commit()
    first = client.get("/cases/?tab=open").get_data(as_text=True)
    second = client.get("/cases/?tab=open&page=2").get_data(as_text=True)
    shown = [c.reference for c in made if c.reference in first]
    rest = [c.reference for c in made if c.reference in second]
    assert len(shown) == 2 and len(rest) == 1 and not set(shown) & set(rest)
    assert "page=2" in first and "page=1" in second
    assert client.get("/cases/?page=-4").status_code == 200


def test_whole_intake_with_csrf_on_as_in_production(app_factory, app):
    """Every form of the flow carries its CSRF token: walk it with CSRF enabled.
    (`app` is here so that the tables are emptied afterwards.)"""
    import re

    csrf_app = app_factory(WTF_CSRF_ENABLED=True)
    client = csrf_app.test_client()

    def tokens(path: str) -> dict[str, str]:
        page = client.get(path).get_data(as_text=True)
        return dict(re.findall(r'name="(csrf_token|token)" type="hidden" value="([^"]+)"', page)
                    + re.findall(r'id="(csrf_token|token)" name="\1" type="hidden" value="([^"]+)"',
                                 page))

    with csrf_app.app_context():
        user = factories.make_user("caseworker")
        area = factories.make_area()
        db.session.commit()
        login_session(client, user)
        hidden = tokens("/cases/new")
        assert {"csrf_token", "token"} <= set(hidden)
        response = client.post("/cases/new", data=consent_form(token=hidden["token"],
                                                                csrf_token=hidden["csrf_token"]))
        assert response.status_code == 302, response.get_data(as_text=True)[:500]
        case_url = response.headers["Location"].rsplit("/", 1)[0]
        csrf = tokens(case_url + "/profile")["csrf_token"]
        response = client.post(case_url + "/profile",
                               data=profile_form(area.id, csrf_token=csrf))
        assert response.status_code == 302
        csrf = tokens(case_url + "/needs")["csrf_token"]
        assert client.post(case_url + "/needs",
                           data={"need_legal": "soon", "csrf_token": csrf}).status_code == 302
        csrf = tokens(case_url + "/close")["csrf_token"]
        assert client.post(case_url + "/close",
                           data={"csrf_token": csrf, "reason": "lost_contact"}).status_code == 302
        assert client.post(case_url + "/reopen").status_code == 400  # no token: refused
        csrf = tokens(case_url + "/erase")["csrf_token"]
        reference = db.session.scalar(select(Case.reference))
        assert client.post(case_url + "/erase",
                           data={"reference": reference, "csrf_token": csrf}).status_code == 302
        assert db.session.scalar(select(Case.status)) == "erased"
        db.session.remove()
