from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import IntegerField, RadioField, SubmitField, TextAreaField
from wtforms.validators import InputRequired, Length, NumberRange, Optional

from app.core.inputs import HavenForm
from app.referrals.service import RESPONSE_TEXT_MAX

DECLINE_REASON_LABELS = {
    "full": _l("No space"),
    "ineligible": _l("Not eligible"),
    "unreachable": _l("Could not reach the survivor"),
    "other": _l("Other reason"),
}
OUTCOME_LABELS = {
    "arrived": _l("Arrived"),
    "no_show": _l("Did not arrive"),
    "completed": _l("Completed"),
}


class ActionForm(HavenForm):
    """A button (CSRF only)."""


class DeclineForm(HavenForm):
    reason = RadioField(
        _l("Reason"),
        choices=list(DECLINE_REASON_LABELS.items()),
        validators=[InputRequired(message=_l("Choose a reason."))],
    )
    text = TextAreaField(
        _l("Anything the caseworker should know (optional, no names)"),
        validators=[Optional(), Length(max=RESPONSE_TEXT_MAX)],
        render_kw={"autocomplete": "off", "maxlength": str(RESPONSE_TEXT_MAX)},
    )
    submit = SubmitField(_l("Decline"))


class OutcomeForm(HavenForm):
    outcome = RadioField(
        _l("Outcome"),
        choices=list(OUTCOME_LABELS.items()),
        validators=[InputRequired(message=_l("Choose an outcome."))],
    )
    submit = SubmitField(_l("Save outcome"))


class BedsForm(HavenForm):
    beds_available = IntegerField(
        _l("Beds free for new referrals"),
        validators=[InputRequired(message=_l("Give a number.")), NumberRange(0, 10000)],
        render_kw={"inputmode": "numeric", "min": 0},
    )
    submit = SubmitField(_l("Update beds"))
