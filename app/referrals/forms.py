"""Forms of the caseworkers' referral steps. The release fields are made per recipient
organization (one release names one organization)."""

from __future__ import annotations

from typing import Any

from flask_babel import lazy_gettext as _l
from wtforms import HiddenField, IntegerField, RadioField, SubmitField
from wtforms.validators import InputRequired, Length, NumberRange, Optional, Regexp

from app.core.inputs import HavenForm
from app.referrals.service import TOKEN_RE

BAD_TOKEN = _l("This form is out of date. Please start again.")
RELEASE_METHOD_LABELS = {
    "written": _l("Written (signed on this tablet)"),
    "verbal": _l("Verbal (read aloud, answered out loud)"),
    "sms": _l("By text message reply"),
}


class ActionForm(HavenForm):
    """A button that changes something (CSRF only)."""


def send_form(organization_ids: list[int], on_file: set[int], max_days: int) -> HavenForm:
    """The preview-and-send form: per organization, how the release was given, a signature
    for a written one, and how long it lasts. ``on_file``: organizations with a valid
    release already, which may be used instead of recording a new one."""
    attrs: dict[str, Any] = {
        "token": HiddenField(
            validators=[InputRequired(message=BAD_TOKEN), Regexp(TOKEN_RE, message=BAD_TOKEN)]
        ),
        "submit": SubmitField(_l("Send referrals")),
    }
    for oid in organization_ids:
        choices = list(RELEASE_METHOD_LABELS.items())
        if oid in on_file:
            choices.insert(0, ("on_file", _l("Use the release on file")))
        attrs[f"method_{oid}"] = RadioField(
            _l("How did the survivor give the release?"),
            choices=choices,
            validators=[InputRequired(message=_l("Choose how the release was given."))],
        )
        attrs[f"signature_{oid}"] = HiddenField(validators=[Optional(), Length(max=48_000)])
        attrs[f"days_{oid}"] = IntegerField(
            _l("The release lasts (days)"),
            default=max_days,
            validators=[
                InputRequired(message=_l("Give a number of days.")),
                NumberRange(1, max_days, message=_l("From 1 to %(max)s days.", max=max_days)),
            ],
            render_kw={"inputmode": "numeric", "min": 1, "max": max_days},
        )
    return type("SendReferralsForm", (HavenForm,), attrs)()  # type: ignore[no-any-return]
