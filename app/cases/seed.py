"""Demo cases for `flask seed-demo` (added to the session, never committed here): one case
taken in on the tablet by the demo caseworker (hers, as the creator: a call that did not
reach the survivor asks for the next one today, so it is on her work queue) and one waiting
in the SMS intake queue, unassigned, for anyone to take; both of the demo NGO. Invented
people; the phone numbers are in the 555-01xx range reserved for fiction."""

from __future__ import annotations

from sqlalchemy import select

from app.cases import followups
from app.cases import service as cases
from app.consent import changes
from app.consent.safe_hours import window
from app.core.crypto import blind_index
from app.core.extensions import db
from app.models import Area, Organization, User
from app.models.base import utcnow
from app.models.cases import CONSENT_SCOPES


def seed_cases(orgs: dict[str, Organization]) -> None:
    org = orgs.get("Safe Harbor Network")
    if org is None:
        return
    worker = db.session.scalar(
        select(User).where(User.organization_id == org.id, User.role == "caseworker")
    )
    area = db.session.scalar(select(Area).order_by(Area.id))
    tablet, _ = cases.create_case(org.id, worker.id if worker else None,
                                  idempotency_key=None, language="es")
    for scope in CONSENT_SCOPES:
        changes.change_consent(tablet, scope, scope != "explicit_wording", "verbal",
                               worker.id if worker else None, language="es")
    cases.set_profile(
        tablet, alias="Lucía (demo)", phone_e164="+14155550142", language="es",
        age_band="25_34", gender="female", area_id=area.id if area else None,
        children_accompanying=1, accessibility=False,
        safe_hours=[window(range(5), "09:00", "12:00")], timezone=None,
        no_voicemail=True, do_not_text=False, note="Demo case: invented person.",
    )
    cases.set_needs(tablet, {"shelter": "immediate", "legal": "soon"})
    today = utcnow().date()
    followups.record(tablet, followups.FollowUpSpec(today, "call", "not_reached", next_on=today),
                     worker.id if worker else None)

    sms, _ = cases.create_case(org.id, None, idempotency_key=None, language="en", channel="sms")
    for scope in ("store", "contact_sms"):
        changes.change_consent(sms, scope, True, "sms", None, language="en")
    sms.phone = "+14155550187"
    sms.phone_index = blind_index("+14155550187")
    cases.set_needs(sms, {"psychosocial": "soon"})
