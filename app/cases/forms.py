"""Intake forms. Sensitive fields have autocomplete off: a shared tablet must not offer one
survivor's details to the next person."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from babel.dates import get_day_names
from flask_babel import get_locale
from flask_babel import lazy_gettext as _l
from wtforms import (
    BooleanField,
    FieldList,
    Form,
    FormField,
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

from app.cases.service import ALIAS_MAX, NOTE_MAX, TOKEN_RE
from app.consent.safe_hours import MAX_WINDOWS, SafeHoursError, Window, minutes_of, valid_zone
from app.consent.service import CONSENT_TEXTS, METHOD_LABELS
from app.core.inputs import HavenForm
from app.core.vocab import (
    AGE_BAND_LABELS,
    CATEGORY_LABELS,
    GENDER_LABELS,
    SERVICE_CATEGORIES,
    SURVIVOR_LANGUAGE_LABELS,
    SURVIVOR_LANGUAGES,
    URGENCY_LABELS,
)
from app.models.cases import CONSENT_SCOPES

OFF = {"autocomplete": "off", "autocapitalize": "off", "spellcheck": "false"}
YES_NO = [("yes", _l("Yes")), ("no", _l("No"))]
BAD_TOKEN = _l("This form is out of date. Please start again.")


def no_markup(_form: Any, field: Any) -> None:
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


class MultiCheckboxField(SelectMultipleField):
    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


def weekday_choices() -> list[tuple[int, str]]:
    """Monday first (0), named by Babel in the interface language."""
    names = get_day_names("wide", locale=get_locale() or "en")
    return [(day, names[day]) for day in range(7)]


class SafeWindowForm(Form):
    """One safe-hours window: weekdays and a from/to time (empty row: no window)."""

    days = MultiCheckboxField(_l("Days"), coerce=int, choices=[], validate_choice=True)
    start = StringField(_l("From"), validators=[Optional(), Length(max=12)],
                        render_kw={"type": "time", "autocomplete": "off"})
    end = StringField(_l("To"), validators=[Optional(), Length(max=12)],
                      render_kw={"type": "time", "autocomplete": "off"})


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
    # Her safe hours: up to three windows of weekdays + from/to (app.safe_hours).
    safe_hours = FieldList(
        FormField(SafeWindowForm), min_entries=MAX_WINDOWS, max_entries=MAX_WINDOWS
    )
    safe_hours_any_time = BooleanField(_l("Any time is safe (no safe hours)"))
    timezone = StringField(
        _l("Her time zone (optional)"),
        validators=[Optional(), Length(max=64)],
        render_kw={**OFF, "list": "timezones"},
    )
    no_voicemail = BooleanField(_l("Do not leave voicemail"))
    do_not_text = BooleanField(_l("Do not send text messages"))
    note = TextAreaField(
        _l("Short note (optional, encrypted)"),
        validators=[Optional(), Length(max=NOTE_MAX), no_markup],
        render_kw={**OFF, "maxlength": NOTE_MAX, "rows": 3},
    )
    submit = SubmitField(_l("Save and continue"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = weekday_choices()
        for entry in self.safe_hours:
            entry.form.days.choices = choices

    def validate_timezone(self, field: Any) -> None:
        field.data = (field.data or "").strip()
        if field.data and not valid_zone(field.data):
            raise ValidationError(_l("Use a timezone name such as Europe/Paris."))

    def safe_windows(self) -> list[Window] | None:
        """The windows typed (empty rows skipped), or None after marking field errors."""
        windows: list[Window] = []
        ok = True
        for entry in self.safe_hours:
            row = entry.form
            days = list(row.days.data or [])
            start, end = (row.start.data or "").strip(), (row.end.data or "").strip()
            if not (days or start or end):
                continue
            if row.days.errors or row.start.errors or row.end.errors:
                ok = False
                continue
            if not days:
                row.days.errors = [_l("Choose at least one day.")]
            begins = _time_or_error(row.start, start, _l("Give the time it starts."))
            ends = _time_or_error(row.end, end, _l("Give the time it ends."))
            if row.days.errors or begins is None or ends is None:
                ok = False
                continue
            try:
                windows.append(Window(frozenset(days), begins, ends))
            except SafeHoursError:
                row.end.errors = [_l("It cannot start and end at the same time.")]
                ok = False
        return windows if ok else None


def _time_or_error(field: Any, text: str, missing: Any) -> int | None:
    if not text:
        field.errors = [missing]
        return None
    try:
        return minutes_of(text)
    except SafeHoursError:
        field.errors = [_l("Use a time like 18:30.")]
        return None


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


class DangerAcknowledgeForm(HavenForm):
    """Acknowledge a danger report. The report time shown on the caseworker's screen goes
    with it, so that a report that arrived since is not acknowledged unseen."""

    reported_at = HiddenField(validators=[DataRequired(), Length(max=40)])
    back = HiddenField(validators=[Optional(), AnyOf(("home", "case"))])
    submit = SubmitField(_l("Acknowledge"))

    def seen(self) -> datetime | None:
        """The report time the caseworker saw (timezone-aware), or None if unreadable."""
        try:
            value = datetime.fromisoformat(self.reported_at.data or "")
        except ValueError:
            return None
        return value if value.tzinfo is not None else None


class CaseSearchForm(HavenForm):
    """The case list's search box (``app.case_search``): sent as a POST so that an alias or
    a phone number never sits in a URL (browser history of a shared tablet, proxy logs)."""

    q = StringField(
        _l("Reference code, name or phone number"),
        validators=[DataRequired(), Length(max=64)],
        render_kw={"autocomplete": "off", "spellcheck": "false", "type": "search"},
    )
