"""Forms of the caseworker's day (issue 16): a follow-up, closing with a reason, assigning."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import DateField, RadioField, SelectField, SubmitField, TextAreaField
from wtforms.validators import AnyOf, DataRequired, InputRequired, Length, Optional

from app.cases.followups import (
    FOLLOW_UP_KINDS,
    FOLLOW_UP_OUTCOMES,
    KIND_LABELS,
    NOTE_MAX,
    OUTCOME_LABELS,
)
from app.cases.forms import OFF, no_markup
from app.core.inputs import HavenForm
from app.core.vocab import CLOSE_REASON_LABELS
from app.models.cases import CLOSE_REASONS


class FollowUpForm(HavenForm):
    occurred_on = DateField(_l("Day of the contact"), validators=[InputRequired()])
    kind = RadioField(
        _l("Kind of contact"),
        choices=[(k, KIND_LABELS[k]) for k in FOLLOW_UP_KINDS],
        validators=[InputRequired(_l("Choose the kind of contact.")), AnyOf(FOLLOW_UP_KINDS)],
    )
    outcome = SelectField(
        _l("Outcome"),
        choices=[("", "—"), *((o, OUTCOME_LABELS[o]) for o in FOLLOW_UP_OUTCOMES)],
        validators=[DataRequired(_l("Choose the outcome.")), AnyOf(FOLLOW_UP_OUTCOMES)],
    )
    next_on = DateField(_l("Next follow-up (optional)"), validators=[Optional()])
    note = TextAreaField(
        _l("Short note (optional)"),
        description=_l("Record only what the next contact needs. At most %(max)d characters.",
                       max=NOTE_MAX),
        validators=[Optional(), Length(max=NOTE_MAX), no_markup],
        render_kw={**OFF, "maxlength": str(NOTE_MAX), "rows": "3"},
    )
    submit = SubmitField(_l("Record follow-up"))


class CloseCaseForm(HavenForm):
    reason = RadioField(
        _l("Why is the case closed?"),
        choices=[(r, CLOSE_REASON_LABELS[r]) for r in CLOSE_REASONS],
        validators=[InputRequired(_l("Choose a reason.")), AnyOf(CLOSE_REASONS)],
    )
    submit = SubmitField(_l("Close the case"))


class AssignForm(HavenForm):
    """The choices (the organization's caseworkers and supervisors, and "unassigned") are
    set by the view."""

    assignee = SelectField(_l("Assigned caseworker"), validators=[Optional()])
    submit = SubmitField(_l("Assign"))
