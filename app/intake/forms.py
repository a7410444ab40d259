"""Intake forms. Sensitive fields have autocomplete off: a shared tablet must not offer one
survivor's details to the next person."""

from __future__ import annotations

from typing import Any

from flask_babel import lazy_gettext as _l
from wtforms import (
    BooleanField,
    HiddenField,
    IntegerField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
    widgets,
)
from wtforms.validators import (
    AnyOf,
    DataRequired,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    Regexp,
    ValidationError,
)

from app.cases import ALIAS_MAX, NOTE_MAX, SAFE_HOURS_MAX, TOKEN_RE
from app.consent import CONSENT_TEXTS, METHOD_LABELS
from app.inputs import HavenForm
from app.models.cases import CONSENT_SCOPES
from app.vocab import (
    AGE_BAND_LABELS,
    CATEGORY_LABELS,
    GENDER_LABELS,
    SERVICE_CATEGORIES,
    SURVIVOR_LANGUAGE_LABELS,
    SURVIVOR_LANGUAGES,
    URGENCY_LABELS,
)

OFF = {"autocomplete": "off", "autocapitalize": "off", "spellcheck": "false"}
YES_NO = [("yes", _l("Yes")), ("no", _l("No"))]
BAD_TOKEN = _l("This form is out of date. Please start again.")


def no_markup(form: Any, field: Any) -> None:
    """Names and notes are plain text: refuse markup rather than store it escaped."""
    if field.data and any(ch in field.data for ch in "<>"):
        raise ValidationError(_l("Use plain text only (no < or >)."))


def language_choices() -> list[tuple[str, str]]:
    return [(code, SURVIVOR_LANGUAGE_LABELS[code]) for code in SURVIVOR_LANGUAGES]


class _ConsentFields(HavenForm):
    language = HiddenField(
        validators=[InputRequired(), AnyOf(SURVIVOR_LANGUAGES, message=BAD_TOKEN)]
    )
    text_version = HiddenField(
        validators=[InputRequired(), AnyOf(tuple(CONSENT_TEXTS), message=BAD_TOKEN)]
    )
    method = RadioField(
        _l("How was consent given?"),
        choices=list(METHOD_LABELS.items()),
        validators=[InputRequired(message=_l("Choose how consent was given."))],
    )
    # A PNG data URL written by static/signature.js; validated and size-limited on the server.
    signature = HiddenField(validators=[Optional(), Length(max=48_000)])


def _consent_step_form() -> type[HavenForm]:
    attrs: dict[str, Any] = {
        "token": HiddenField(
            validators=[InputRequired(message=BAD_TOKEN), Regexp(TOKEN_RE, message=BAD_TOKEN)]
        ),
        "submit": SubmitField(_l("Save consent and continue")),
    }
    for scope in CONSENT_SCOPES:
        if scope == "store":
            attrs["scope_store"] = RadioField(
                _l("Keep a record"),
                choices=YES_NO,
                validators=[InputRequired(message=_l("Ask the survivor and choose yes or no."))],
            )
        else:
            # Opt-in: a scope nobody asked about stays "no".
            attrs[f"scope_{scope}"] = RadioField(
                scope, choices=YES_NO, default="no",
                validators=[InputRequired(message=_l("Choose yes or no."))],
            )
    return type("ConsentStepForm", (_ConsentFields,), attrs)


ConsentStepForm = _consent_step_form()


class ChangeConsentForm(_ConsentFields):
    scope = RadioField(_l("Which consent?"), choices=[(s, s) for s in CONSENT_SCOPES],
                       validators=[InputRequired(message=_l("Choose a consent."))])
    decision = RadioField(
        _l("The survivor"),
        choices=[("grant", _l("gives consent")), ("withdraw", _l("withdraws consent"))],
        validators=[InputRequired(message=_l("Choose give or withdraw."))],
    )
    confirm_erase = BooleanField(
        _l("I understand: withdrawing “Keep a record” erases this case now.")
    )
    submit = SubmitField(_l("Record the change"))


class ProfileForm(HavenForm):
    alias = StringField(
        _l("Name the survivor chooses (not a legal name)"),
        validators=[DataRequired(), Length(max=ALIAS_MAX), no_markup],
        render_kw=OFF,
    )
    phone = StringField(
        _l("Phone (optional)"),
        validators=[Optional(), Length(max=32)],
        render_kw={**OFF, "type": "tel", "inputmode": "tel"},
    )
    language = SelectField(_l("Language"), choices=[], validators=[DataRequired()])
    age_band = SelectField(
        _l("Age range"), choices=[("", "—"), *AGE_BAND_LABELS.items()],
        validators=[DataRequired(message=_l("Choose an age range."))],
    )
    gender = SelectField(
        _l("Gender (optional)"), choices=[("", _l("Not given")), *GENDER_LABELS.items()],
        validators=[Optional()],
    )
    area_id = SelectField(
        _l("Area"), coerce=str, choices=[],
        validators=[DataRequired(message=_l("Choose an area."))],
    )
    children_accompanying = IntegerField(
        _l("Children with the survivor"), default=0,
        validators=[Optional(), NumberRange(min=0, max=20)],
        render_kw={"inputmode": "numeric", "min": 0, "max": 20},
    )
    accessibility = BooleanField(_l("Needs accessible services (mobility, hearing, sight)"))
    safe_hours = StringField(
        _l("Safe times to contact (optional)"),
        validators=[Optional(), Length(max=SAFE_HOURS_MAX), no_markup],
        render_kw=OFF,
    )
    no_voicemail = BooleanField(_l("Do not leave voicemail"))
    do_not_text = BooleanField(_l("Do not send text messages"))
    note = TextAreaField(
        _l("Short note (optional, encrypted)"),
        validators=[Optional(), Length(max=NOTE_MAX), no_markup],
        render_kw={**OFF, "maxlength": NOTE_MAX, "rows": 3},
    )
    submit = SubmitField(_l("Save and continue"))


def _needs_form() -> type[HavenForm]:
    attrs: dict[str, Any] = {"submit": SubmitField(_l("Save needs"))}
    for category in SERVICE_CATEGORIES:
        attrs[f"need_{category}"] = SelectField(
            CATEGORY_LABELS[category],
            choices=[("", _l("Not needed")), *URGENCY_LABELS.items()],
            validators=[Optional()],
        )
    return type("NeedsForm", (HavenForm,), attrs)


NeedsForm = _needs_form()


class MultiCheckboxField(SelectMultipleField):
    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


class AnonymousForm(HavenForm):
    token = HiddenField(
        validators=[InputRequired(message=BAD_TOKEN), Regexp(TOKEN_RE, message=BAD_TOKEN)]
    )
    area_id = SelectField(_l("Area (optional)"), coerce=str, choices=[], validators=[Optional()])
    needs = MultiCheckboxField(
        _l("What help was asked for?"), choices=list(CATEGORY_LABELS.items()),
        validators=[Optional()],
    )
    submit = SubmitField(_l("Record anonymous count"))


class EraseForm(HavenForm):
    reference = StringField(
        _l("Type the reference code to confirm"),
        validators=[DataRequired(), Length(max=10)],
        render_kw=OFF,
    )
    submit = SubmitField(_l("Erase everything now"))


class ActionForm(HavenForm):
    """CSRF-only form for close / reopen buttons."""

    submit = SubmitField()
