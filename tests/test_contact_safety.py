"""Contact safety (issue 13, items 1–4), through the domain, the outbox worker, the views and
the migration, on the real database:

1. free-text safe hours from before are converted only when they read one way, else flagged;
   a flagged survivor gets no outbox SMS (hotline replies to her own texts still go);
2. safe hours are read on HER clock (her case's zone, else her area's), not the service's;
3. her contact rules are shown next to her phone wherever it is shown, in the viewer's
   language;
4. a queued survivor text about a referral is cancelled by any change of that referral, in
   the same transaction, and the worker checks again at the moment of sending.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text, update

from app.cases.erasure import erase_case
from app.consent import changes
from app.consent import service as consent
from app.core.extensions import db
from app.models import Area, Case, Message, Referral, utcnow
from app.referrals import service as referrals
from app.sms import messaging
from app.sms.worker import Worker
from tests import factories
from tests.conftest import login_session

EVERY_DAY = [0, 1, 2, 3, 4, 5, 6]
PHONE_SHOWN = "+1 415-555-0123"  # factories.make_case's number, formatted


def hours_json(*windows: tuple[list[int], str, str]) -> str:
    """Safe hours in their stored form (sealed JSON of weekdays and from/to times)."""
    return json.dumps(
        [{"days": days, "from": start, "to": end} for days, start, end in windows],
        separators=(",", ":"),
    )


def outbox(template: str = "survivor.referral_accepted") -> list[Message]:
    return list(
        db.session.scalars(
            select(Message)
            .where(Message.direction == "out", Message.template_key == template)
            .order_by(Message.id)
        )
    )


def no_sleep(seconds: float) -> None:
    return None


@pytest.fixture
def ngo(app):
    return factories.make_org("ngo")


def legal_service(**fields: Any) -> Any:
    return factories.make_service(
        organization=factories.make_org("provider"), category="legal",
        intake_phone="+14155550100", **fields,
    )


def referred(case: Case, service: Any | None = None) -> Referral:
    service = service or legal_service()
    [referral], _ = referrals.create_referrals(
        case,
        [referrals.ReferralRequest(service.id, referrals.ReleaseSpec(service.organization_id,
                                                                      "verbal"))],
        None,
        idempotency_key=None,
    )
    return referral


def accepted(case: Case, at: datetime | None = None, **service_fields: Any) -> Referral:
    referral = referred(case, legal_service(**service_fields))
    referrals.accept(referral, None, at=at)
    return referral


# --- 1. free-text safe hours ---------------------------------------------------------------


@pytest.mark.parametrize("typed", ["9 to 5pm", "10-2pm", "after 6", "when he is at work"])
def test_unreadable_free_text_safe_hours_send_no_text(app, ngo, typed):
    """Today "9 to 5pm" reads as 21:00-17:00 and "10-2pm" as 22:00-14:00: a text could
    leave at 3 a.m. Text that does not read one way must send nothing."""
    with app.test_request_context():
        case = factories.make_case(ngo, needs={"legal": "soon"})
        case.safe_hours = typed
        accepted(case, at=datetime(2026, 1, 15, 3, 0, tzinfo=UTC))
        assert outbox() == []


def test_a_flagged_survivor_gets_no_outbox_sms(app, ngo):
    with app.test_request_context():
        case = factories.make_case(ngo, needs={"legal": "soon"})
        referral = accepted(case)
        [queued] = outbox()
        # Her hours became "to be checked" after the text was queued (e.g. the migration).
        case.safe_hours = "9 to 5pm"
        case.safe_hours_check = True
        db.session.commit()
        assert not consent.permits(case, "sms")
        assert messaging.enqueue("survivor.update", params={"reference": case.reference},
                                 case=case) is None
    result = Worker(app, sleep=no_sleep).run_pass()
    assert result.outcomes[queued.id] == "cancelled"
    db.session.expire_all()
    assert db.session.get(Message, queued.id).status == "cancelled"
    assert db.session.get(Referral, referral.id).status == "accepted"


def test_saving_structured_hours_lifts_the_block(app, ngo):
    from app.consent import safe_hours

    case = factories.make_case(ngo, needs={"legal": "soon"})
    case.safe_hours = "after 6"
    case.safe_hours_check = True
    safe_hours.write(case, [safe_hours.window(EVERY_DAY, "18:00", "21:00")])
    assert case.safe_hours_check is False and consent.permits(case, "sms")
    safe_hours.write(case, [])  # cleared: any time
    assert case.safe_hours is None and case.safe_hours_check is False


def test_hotline_replies_to_her_own_texts_are_not_blocked(app_factory):
    from tests.sms_support import ACCOUNT_SID, AUTH_TOKEN, inbound_params, post_signed

    sms_app = app_factory(TWILIO_AUTH_TOKEN=AUTH_TOKEN, TWILIO_ACCOUNT_SID=ACCOUNT_SID)
    with sms_app.app_context():
        ngo = factories.make_org("ngo", name="Hotline NGO")
        case = factories.make_case(ngo, channel="sms")
        case.safe_hours = "10-2pm"
        case.safe_hours_check = True
        db.session.commit()
        response = post_signed(sms_app.test_client(), "/sms/inbound",
                               inbound_params("+14155550123", "HELP"))
        assert response.status_code == 200
        assert b"<Message>" in response.data and b"911" in response.data
        db.session.remove()


# --- 2. her time zone ------------------------------------------------------------------------


def test_safe_hours_are_read_in_her_areas_zone_not_the_services(app, ngo):
    with app.test_request_context():
        area = factories.make_area()
        area.timezone = "America/New_York"
        case = factories.make_case(ngo, area=area, needs={"legal": "soon"})
        case.safe_hours = hours_json((EVERY_DAY, "18:00", "21:00"))
        # 12:00 UTC = 07:00 in New York = 21:00 in Tokyo (the service's zone).
        accepted(case, at=datetime(2026, 1, 15, 12, 0, tzinfo=UTC), timezone="Asia/Tokyo")
        [message] = outbox()
        assert message.next_attempt_at == datetime(2026, 1, 15, 23, 0, tzinfo=UTC)  # 18:00 NY


def test_the_zone_set_on_her_case_wins_over_her_areas(app, ngo):
    with app.test_request_context():
        area = factories.make_area()
        area.timezone = "America/New_York"
        case = factories.make_case(ngo, area=area, needs={"legal": "soon"})
        case.timezone = "Europe/Paris"
        case.safe_hours = hours_json((EVERY_DAY, "18:00", "21:00"))
        accepted(case, at=datetime(2026, 1, 15, 12, 0, tzinfo=UTC))
        [message] = outbox()
        assert message.next_attempt_at == datetime(2026, 1, 15, 17, 0, tzinfo=UTC)  # 18:00 CET


def test_a_parent_areas_zone_then_the_configured_default(app, ngo):
    app.config["HAVEN_DEFAULT_TIMEZONE"] = "Asia/Kolkata"  # UTC+05:30
    with app.test_request_context():
        county = factories.make_area()
        county.timezone = "America/Los_Angeles"
        town = factories.make_area()
        town.parent_id = county.id
        db.session.flush()
        db.session.expire(town)
        at = datetime(2026, 1, 15, 0, 0, tzinfo=UTC)
        hours = hours_json((EVERY_DAY, "18:00", "21:00"))
        in_town = factories.make_case(ngo, area=town, needs={"legal": "soon"})
        in_town.safe_hours = hours
        accepted(in_town, at=at)
        nowhere = factories.make_case(ngo, area=factories.make_area(), needs={"legal": "soon"})
        nowhere.safe_hours = hours
        accepted(nowhere, at=at)
        first, second = outbox()
        assert first.next_attempt_at == datetime(2026, 1, 15, 2, 0, tzinfo=UTC)  # 18:00 LA
        assert second.next_attempt_at == datetime(2026, 1, 15, 12, 30, tzinfo=UTC)  # 18:00 IST


# --- the worker at the moment of sending ----------------------------------------------------


def test_the_worker_waits_when_the_hours_changed_after_queuing(app, ngo):
    at = datetime(2026, 1, 15, 18, 30, tzinfo=UTC)
    with app.test_request_context():
        case = factories.make_case(ngo, needs={"legal": "soon"})  # area without zone: UTC
        case.safe_hours = hours_json((EVERY_DAY, "18:00", "21:00"))
        accepted(case, at=at)
        [message] = outbox()
        assert message.next_attempt_at == at  # inside her hours: at once
        case.safe_hours = hours_json((EVERY_DAY, "06:00", "08:00"))
        db.session.commit()
    result = Worker(app, sleep=no_sleep, now=lambda: at + timedelta(minutes=1)).run_pass()
    assert result.outcomes[message.id] == "deferred" and result.deferred == 1
    db.session.expire_all()
    waiting = db.session.get(Message, message.id)
    assert waiting.status == "queued" and waiting.attempts == 0  # not counted as a try
    assert waiting.next_attempt_at == datetime(2026, 1, 16, 6, 0, tzinfo=UTC)
    assert waiting.lease_owner is None and waiting.twilio_sid is None
    # At 06:00 it goes.
    result = Worker(app, sleep=no_sleep, now=lambda: datetime(2026, 1, 16, 6, 0, tzinfo=UTC)
                    ).run_pass()
    assert result.outcomes[message.id] == "sent"


def test_the_worker_cancels_a_text_whose_referral_is_no_longer_accepted(app, ngo):
    with app.test_request_context():
        case = factories.make_case(ngo, needs={"legal": "soon"})
        referral = accepted(case)
        [message] = outbox()
        assert message.referral_id == referral.id
        # Changed by something that did not go through the referrals module.
        db.session.execute(
            update(Referral).where(Referral.id == referral.id).values(status="cancelled")
        )
        db.session.commit()
    result = Worker(app, sleep=no_sleep).run_pass()
    assert result.outcomes[message.id] == "cancelled"


def test_a_text_announcing_a_referral_must_name_it(app, ngo):
    case = factories.make_case(ngo)
    with pytest.raises(messaging.MessagingError):
        messaging.enqueue("survivor.referral_accepted", case=case,
                          params={"reference": case.reference, "category": "legal"})


def test_an_old_referral_text_without_its_referral_is_not_sent(app, ngo):
    """Queued before referral_id existed (or its referral deleted): what it announces can
    no longer be checked, so it is cancelled."""
    with app.test_request_context():
        case = factories.make_case(ngo, needs={"legal": "soon"})
        accepted(case)
        [message] = outbox()
        message.referral_id = None
        db.session.commit()
    result = Worker(app, sleep=no_sleep).run_pass()
    assert result.outcomes[message.id] == "cancelled"


# --- 4. a change of the referral cancels its queued texts at once ---------------------------


def _withdraw_consent(referral: Referral) -> None:
    changes.change_consent(referral.case, "share_legal", False, "verbal", None, language="en")


def _cancel(referral: Referral) -> None:
    assert referrals.cancel(referral, None)


def _withdraw_release(referral: Referral) -> None:
    referrals.withdraw_release(referral.release, None)


def _arrived(referral: Referral) -> None:
    referrals.record_outcome(referral, "arrived", None)


def _no_show(referral: Referral) -> None:
    referrals.record_outcome(referral, "no_show", None)


def _erase(referral: Referral) -> None:
    erase_case(referral.case, None)


@pytest.mark.parametrize(
    "change", [_withdraw_consent, _cancel, _withdraw_release, _arrived, _no_show, _erase]
)
def test_a_change_of_the_referral_cancels_its_queued_text_in_the_same_transaction(
    app, ngo, change
):
    with app.test_request_context():
        case = factories.make_case(ngo, needs={"legal": "soon"})
        other = accepted(factories.make_case(ngo, needs={"legal": "soon"}))
        referral = accepted(case)
        db.session.commit()
        mine, theirs = outbox()[1], outbox()[0]
        change(db.session.get(Referral, referral.id))
        db.session.flush()
        db.session.expire_all()
        assert db.session.get(Message, mine.id).status == "cancelled"
        assert db.session.get(Message, theirs.id).status == "queued"  # another referral's
        db.session.rollback()  # undone together with the change itself
        assert db.session.get(Message, mine.id).status == "queued"
        assert db.session.get(Referral, referral.id).status == "accepted"
        assert db.session.get(Referral, other.id).status == "accepted"


# --- 3. her rules next to her phone ------------------------------------------------------------


def rules_case(ngo: Any, **fields: Any) -> Case:
    area = factories.make_area()
    area.timezone = "America/Chicago"
    case = factories.make_case(
        ngo, area=area, needs={"legal": "soon"}, no_voicemail=True, do_not_text=True, **fields
    )
    case.safe_hours = hours_json(([0, 1, 2, 3, 4], "18:00", "21:00"), ([5], "22:00", "02:00"))
    return case


def phone_block(html: str) -> str:
    """Her rules as shown right after her phone number: the contact-rules block that follows
    it, with no other field in between."""
    phone = html.find(f'<bdi dir="ltr">{PHONE_SHOWN}</bdi>')
    assert phone >= 0, "phone not shown"
    rules = html.find('class="contact-rules', phone)
    assert rules >= 0, "no contact rules after the phone"
    between = html[phone:rules]
    assert len(between) < 300 and "<dt" not in between and "<h" not in between, between
    return html[rules:html.index("</div>", rules)]


def assert_rules_next_to_phone(html: str, *, hours: tuple[str, ...] = ("Mon–Fri", "6:00")):
    block = phone_block(html)
    assert "Do not text" in block
    assert "No voicemail" in block
    for piece in hours:
        assert piece in block, piece
    assert "America/Chicago" in block


def test_the_provider_sees_her_rules_next_to_her_phone(app, client):
    provider_org = factories.make_org("provider")
    service = factories.make_service(organization=provider_org, category="legal")
    case = rules_case(factories.make_org("ngo"))
    referral = factories.make_referral(case, service)
    user = factories.make_user("provider", organization=provider_org)
    db.session.commit()
    login_session(client, user)
    html = client.get(f"/provider/referrals/{referral.id}").get_data(as_text=True)
    assert_rules_next_to_phone(html, hours=("Mon–Fri", "6:00", "Sat", "10:00", "next day"))


def test_the_provider_sees_them_in_her_own_language(app, client):
    provider_org = factories.make_org("provider")
    service = factories.make_service(organization=provider_org, category="legal")
    case = rules_case(factories.make_org("ngo"))
    referral = factories.make_referral(case, service)
    user = factories.make_user("provider", organization=provider_org)
    user.locale = "fr"
    db.session.commit()
    login_session(client, user)
    block = phone_block(client.get(f"/provider/referrals/{referral.id}").get_data(as_text=True))
    assert "lun.–ven." in block and "18:00" in block and "America/Chicago" in block
    assert "6:00 PM" not in block


def test_unconfirmed_hours_are_shown_to_the_provider_without_the_old_text(app, client):
    provider_org = factories.make_org("provider")
    service = factories.make_service(organization=provider_org, category="legal")
    case = factories.make_case(needs={"legal": "soon"})
    case.safe_hours = "only when he is at work"
    case.safe_hours_check = True
    referral = factories.make_referral(case, service)
    user = factories.make_user("provider", organization=provider_org)
    db.session.commit()
    login_session(client, user)
    html = client.get(f"/provider/referrals/{referral.id}").get_data(as_text=True)
    block = phone_block(html)
    assert "not confirmed" in block
    assert "he is at work" not in html


@pytest.fixture
def caseworker(app, client, ngo):
    user = factories.make_user("caseworker", organization=ngo)
    db.session.commit()
    login_session(client, user)
    return user


def test_the_case_page_shows_her_rules_next_to_her_phone(app, client, caseworker, ngo):
    case = rules_case(ngo)
    db.session.commit()
    html = client.get(f"/cases/{case.id}").get_data(as_text=True)
    assert_rules_next_to_phone(html)
    assert "from her area" in phone_block(html)


def test_the_needs_step_shows_them_with_the_phone(app, client, caseworker, ngo):
    case = rules_case(ngo)
    db.session.commit()
    assert_rules_next_to_phone(client.get(f"/cases/{case.id}/needs").get_data(as_text=True))


def test_the_preview_of_what_the_provider_will_see_shows_them(app, client, caseworker, ngo):
    case = rules_case(ngo)
    service = legal_service()
    db.session.commit()
    html = client.post(f"/referrals/cases/{case.id}/preview",
                       data={"services": [str(service.id)]}).get_data(as_text=True)
    assert "This provider will see:" in html
    assert_rules_next_to_phone(html)


def test_the_export_shows_them_and_holds_them_as_structured_fields(app, client, caseworker, ngo):
    case = rules_case(ngo)
    db.session.commit()
    assert_rules_next_to_phone(client.get(f"/cases/{case.id}/export").get_data(as_text=True))
    data = json.loads(client.get(f"/cases/{case.id}/export.json").get_data(as_text=True))
    assert data["profile"]["phone"] == PHONE_SHOWN
    assert data["profile"]["contact_rules"] == {
        "do_not_text": True,
        "no_voicemail": True,
        "safe_hours": [
            {"days": ["mon", "tue", "wed", "thu", "fri"], "from": "18:00", "to": "21:00"},
            {"days": ["sat"], "from": "22:00", "to": "02:00"},
        ],
        "time_zone": "America/Chicago",
        "time_zone_from": "area",
        "safe_hours_need_checking": False,
        "safe_hours_old_text": None,
    }


def test_hours_to_check_are_flagged_on_the_case_and_home_pages(app, client, caseworker, ngo):
    flagged = factories.make_case(ngo)
    flagged.safe_hours = "10-2pm"
    flagged.safe_hours_check = True
    fine = factories.make_case(ngo)
    elsewhere = factories.make_case()  # another organization's
    elsewhere.safe_hours_check = True
    db.session.commit()
    html = client.get(f"/cases/{flagged.id}").get_data(as_text=True)
    assert "Safe hours need checking" in html and "10-2pm" in html
    assert "Safe hours need checking" not in client.get(f"/cases/{fine.id}").get_data(
        as_text=True)
    home = client.get("/").get_data(as_text=True)
    assert "Safe hours need checking" in home
    assert f"/cases/{flagged.id}/profile" in home and flagged.reference in home
    assert fine.reference not in home and elsewhere.reference not in home


# --- the profile form ------------------------------------------------------------------------


def profile_data(area_id: int, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "alias": "Mira", "phone": "(415) 555-0199", "language": "es", "age_band": "18_24",
        "gender": "", "area_id": str(area_id), "children_accompanying": "0",
    }
    data.update(extra)
    return data


def test_structured_safe_hours_and_zone_are_saved_sealed(app, client, caseworker, ngo):
    from app.consent import safe_hours

    case = factories.make_case(ngo)
    area = factories.make_area()
    db.session.commit()
    response = client.post(f"/cases/{case.id}/profile", data=profile_data(
        area.id,
        **{"safe_hours-0-days": ["0", "1", "2", "3", "4"], "safe_hours-0-start": "09:00",
           "safe_hours-0-end": "17:00",
           "safe_hours-1-days": ["5"], "safe_hours-1-start": "22:00:00",
           "safe_hours-1-end": "02:00"},
        timezone="Europe/Paris",
    ))
    assert response.status_code == 302, response.get_data(as_text=True)
    db.session.expire_all()
    case = db.session.get(Case, case.id)
    assert safe_hours.read(case).windows == (
        safe_hours.window([0, 1, 2, 3, 4], "09:00", "17:00"),
        safe_hours.window([5], "22:00", "02:00"),
    )
    assert case.timezone == "Europe/Paris" and case.safe_hours_check is False
    sealed = bytes(db.session.scalar(
        select(Case.safe_hours_enc).where(Case.id == case.id)))
    assert b"09:00" not in sealed and b"days" not in sealed
    page = client.get(f"/cases/{case.id}/profile").get_data(as_text=True)
    assert 'value="09:00"' in page and 'value="22:00"' in page and "Europe/Paris" in page
    assert 'type="time"' in page


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"safe_hours-0-start": "09:00", "safe_hours-0-end": "17:00"}, "Choose at least one day"),
        ({"safe_hours-0-days": ["1"], "safe_hours-0-end": "17:00"}, "Give the time it starts"),
        ({"safe_hours-0-days": ["1"], "safe_hours-0-start": "09:00"}, "Give the time it ends"),
        ({"safe_hours-0-days": ["1"], "safe_hours-0-start": "9 to 5",
          "safe_hours-0-end": "17:00"}, "Use a time like 18:30"),
        ({"safe_hours-0-days": ["1"], "safe_hours-0-start": "09:00",
          "safe_hours-0-end": "09:00"}, "cannot start and end at the same time"),
        ({"safe_hours-0-days": ["7"], "safe_hours-0-start": "09:00",
          "safe_hours-0-end": "10:00"}, "not a valid choice"),
        ({"safe_hours-0-days": ["Mon\x00"], "safe_hours-0-start": "09:00",
          "safe_hours-0-end": "10:00"}, "could not be coerced"),
        ({"safe_hours-2-days": ["1"], "safe_hours-2-start": "09:00" * 1000,
          "safe_hours-2-end": "10:00"}, "Field cannot be longer than 12 characters"),
        ({"timezone": "Mars/Olympus"}, "Use a timezone name such as Europe/Paris."),
        ({"timezone": "../../../etc/passwd"}, "Use a timezone name such as Europe/Paris."),
    ],
)
def test_bad_safe_hours_re_render_with_field_errors(app, client, caseworker, ngo, row, message):
    case = factories.make_case(ngo)
    case.safe_hours = hours_json((EVERY_DAY, "18:00", "21:00"))
    area = factories.make_area()
    db.session.commit()
    before = bytes(case.safe_hours_enc)
    response = client.post(f"/cases/{case.id}/profile", data=profile_data(area.id, **row))
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert message in html and 'aria-invalid="true"' in html
    db.session.expire_all()
    unchanged = db.session.get(Case, case.id)
    assert bytes(unchanged.safe_hours_enc) == before and unchanged.alias == "Rosa"


def test_a_flagged_case_needs_hours_or_an_explicit_any_time(app, client, caseworker, ngo):
    case = factories.make_case(ngo)
    case.safe_hours = "after 6"
    case.safe_hours_check = True
    area = factories.make_area()
    db.session.commit()
    page = client.get(f"/cases/{case.id}/profile").get_data(as_text=True)
    assert "after 6" in page and "Safe hours need checking" in page
    # Saving the profile for another reason does not lift the block by accident.
    response = client.post(f"/cases/{case.id}/profile", data=profile_data(area.id))
    assert response.status_code == 400
    assert "Enter her safe hours as days and times" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Case, case.id).safe_hours_check is True
    response = client.post(f"/cases/{case.id}/profile",
                           data=profile_data(area.id, safe_hours_any_time="y"))
    assert response.status_code == 302
    db.session.expire_all()
    case = db.session.get(Case, case.id)
    assert case.safe_hours_check is False and case.safe_hours is None


def test_the_admin_sets_an_areas_time_zone(app, client):
    admin = factories.make_user("admin")
    area = factories.make_area()
    db.session.commit()
    login_session(client, admin)
    response = client.post(f"/directory/areas/{area.id}",
                           data={"name": area.name, "parent_id": "0", "timezone": "Nowhere/Else"})
    assert response.status_code == 400
    assert "Use a timezone name such as Europe/Paris." in response.get_data(as_text=True)
    response = client.post(f"/directory/areas/{area.id}",
                           data={"name": area.name, "parent_id": "0",
                                 "timezone": "Africa/Nairobi"})
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(Area, area.id).timezone == "Africa/Nairobi"
    assert "Africa/Nairobi" in client.get("/directory/areas").get_data(as_text=True)


def test_the_default_zone_must_be_a_known_zone():
    from config import BaseConfig
    from tests.conftest import TEST_ENV

    env = dict(TEST_ENV, DATABASE_URL="sqlite://", HAVEN_DEFAULT_TIMEZONE="Europe/Pariss")
    assert any("HAVEN_DEFAULT_TIMEZONE" in p for p in BaseConfig(env).problems())
    assert BaseConfig(dict(TEST_ENV, DATABASE_URL="sqlite://")).HAVEN_DEFAULT_TIMEZONE == "UTC"


# --- the migration: convert what reads one way, flag the rest --------------------------------

LEGACY = {
    "9:00-17:00": hours_json((EVERY_DAY, "09:00", "17:00")),
    "18:00 to 21:00": hours_json((EVERY_DAY, "18:00", "21:00")),
    "weekdays 9am-5pm": hours_json(([0, 1, 2, 3, 4], "09:00", "17:00")),
    "9 to 5pm": None,
    "10-2pm": None,
    "after 6": None,
    "weekdays 9-12": None,
}


def test_the_migration_converts_unambiguous_hours_and_flags_the_rest(databases):
    from flask_migrate import downgrade, upgrade

    from app import create_app
    from app.core.crypto import new_data_key, unwrap
    from tests.conftest import make_config

    app = create_app(make_config(databases.fresh()))
    with app.app_context():
        upgrade(revision="0008_audit_object_index")
        now = utcnow()
        with db.engine.begin() as conn:
            conn.execute(text("INSERT INTO organization (id, name, kind, totp_required, "
                              "created_at) VALUES (1, 'NGO', 'ngo', false, :now)"), {"now": now})
            for number, typed in enumerate([*LEGACY, None], start=1):
                key = new_data_key()
                conn.execute(text("INSERT INTO data_key (id, wrapped, master_fp, created_at) "
                                  "VALUES (:id, :wrapped, :fp, :now)"),
                             {"id": number, "wrapped": key.wrapped, "fp": key.master_fp,
                              "now": now})
                sealed = unwrap(key).encrypt(typed.encode()) if typed else None
                conn.execute(text(
                    "INSERT INTO survivor_case (id, reference, organization_id, channel, status, "
                    "data_key_id, safe_hours_enc, accessibility, no_voicemail, do_not_text, "
                    "created_at, updated_at) VALUES (:id, :ref, 1, 'tablet', 'open', :id, "
                    ":sealed, false, false, false, :now, :now)"),
                    {"id": number, "ref": f"AAA-{number:03d}", "sealed": sealed, "now": now})
        upgrade(revision="heads")
        db.session.remove()
        cases = {c.id: c for c in db.session.scalars(select(Case))}
        for number, (typed, converted) in enumerate(LEGACY.items(), start=1):
            case = cases[number]
            if converted is None:
                assert case.safe_hours_check is True, typed
                assert case.safe_hours == typed  # kept for the caseworker to read
            else:
                assert case.safe_hours_check is False, typed
                assert case.safe_hours == converted, typed
        blank = cases[len(LEGACY) + 1]
        assert blank.safe_hours is None and blank.safe_hours_check is False
        db.session.remove()
        downgrade(revision="0008_audit_object_index")
        with db.engine.connect() as conn:
            columns = list(conn.exec_driver_sql("SELECT * FROM survivor_case LIMIT 0").keys())
        assert "safe_hours_check" not in columns and "timezone" not in columns
        db.session.remove()
        db.engine.dispose()
