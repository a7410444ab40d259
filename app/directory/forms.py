from __future__ import annotations

import re
from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from wtforms import (
    BooleanField,
    FloatField,
    IntegerField,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    ValidationError,
)
from wtforms.widgets import CheckboxInput, ListWidget

from app.consent.safe_hours import valid_zone
from app.core import vocab
from app.core.discretion import MAX_DIGITS, SMS_LABEL_MAX, SmsLabelRefused, clean_sms_label
from app.core.inputs import HavenForm, coerce_id
from app.models.directory import MAX_AGE, zone

WEEKDAY_LABELS = (
    _l("Monday"),
    _l("Tuesday"),
    _l("Wednesday"),
    _l("Thursday"),
    _l("Friday"),
    _l("Saturday"),
    _l("Sunday"),
)
_SPAN = re.compile(r"^\s*(\d{1,2})[:.](\d{2})\s*[-–]\s*(\d{1,2})[:.](\d{2})\s*$")


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


def parse_day_hours(text: str) -> list[tuple[str, str]]:
    """ "09:00-12:00, 13:00-17:00", "24h" or "" (closed) -> [(opens, closes), ...].
    Raises ValueError with a translatable message."""
    text = (text or "").strip().lower()
    if not text:
        return []
    if text in ("24h", "24 h", "24/24", "00:00-24:00"):
        return [("00:00", "24:00")]
    spans = []
    for part in text.split(","):
        m = _SPAN.match(part)
        if not m:
            raise ValueError("format")
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2):
            raise ValueError("format")
        spans.append((f"{h1:02d}:{m1:02d}", f"{h2:02d}:{m2:02d}"))
    return spans


def format_day_hours(hours: list[Any], weekday: int) -> str:
    spans = [(o, c) for d, o, c in hours or [] if int(d) == weekday]
    if spans == [("00:00", "24:00")]:
        return "24h"
    return ", ".join(f"{o}-{c}" for o, c in sorted(spans))


def _hours_field(index: int) -> StringField:
    return StringField(
        WEEKDAY_LABELS[index],
        validators=[Optional(), Length(max=80)],
        render_kw={"placeholder": "09:00-17:00", "inputmode": "text"},
    )


class ServiceForm(HavenForm):
    organization_id = SelectField(
        _l("Organization"), coerce=coerce_id, validators=[DataRequired()]
    )
    name = StringField(_l("Name"), validators=[DataRequired(), Length(min=2, max=200)])
    description = TextAreaField(_l("Description"), validators=[Optional(), Length(max=4000)])
    category = SelectField(
        _l("Category"), choices=list(vocab.CATEGORY_LABELS.items()), validators=[DataRequired()]
    )
    languages = MultiCheckboxField(
        _l("Languages spoken"), choices=list(vocab.SURVIVOR_LANGUAGE_LABELS.items())
    )
    genders = MultiCheckboxField(
        _l("Genders served (none ticked: everyone)"), choices=list(vocab.GENDER_LABELS.items())
    )
    min_age = IntegerField(
        _l("Youngest age served (empty: no minimum)"),
        validators=[Optional(), NumberRange(0, MAX_AGE)],
        render_kw={"inputmode": "numeric", "min": 0, "max": MAX_AGE},
    )
    max_age = IntegerField(
        _l("Oldest age served (empty: no maximum)"),
        validators=[Optional(), NumberRange(0, MAX_AGE)],
        render_kw={"inputmode": "numeric", "min": 0, "max": MAX_AGE},
    )
    accepts_children = BooleanField(_l("Accepts accompanying children"))
    wheelchair_access = BooleanField(_l("Wheelchair access"))
    hearing_access = BooleanField(_l("Hearing support (induction loop or sign language)"))
    areas = SelectMultipleField(_l("Areas served"), coerce=coerce_id, validate_choice=True)
    latitude = FloatField(_l("Latitude"), validators=[Optional(), NumberRange(-90, 90)])
    longitude = FloatField(_l("Longitude"), validators=[Optional(), NumberRange(-180, 180)])
    location_confidential = BooleanField(
        _l("Confidential location: its place is shown on staff pages only, never published")
    )
    hours_0 = _hours_field(0)
    hours_1 = _hours_field(1)
    hours_2 = _hours_field(2)
    hours_3 = _hours_field(3)
    hours_4 = _hours_field(4)
    hours_5 = _hours_field(5)
    hours_6 = _hours_field(6)
    timezone = StringField(
        _l("Timezone"),
        validators=[DataRequired(), Length(max=64)],
        render_kw={"placeholder": "America/New_York"},
    )
    intake_phone = StringField(
        _l("Intake phone (providers text from it)"),
        validators=[Optional(), Length(max=32)],
        render_kw={"type": "tel", "autocomplete": "off"},
    )
    beds_total = IntegerField(
        _l("Beds in total"),
        validators=[Optional(), NumberRange(0, 10000)],
        render_kw={"inputmode": "numeric", "min": 0},
    )
    beds_available = IntegerField(
        _l("Beds free now"),
        validators=[Optional(), NumberRange(0, 10000)],
        render_kw={"inputmode": "numeric", "min": 0},
    )
    active = BooleanField(_l("Active (shown in matching)"), default=True)
    submit = SubmitField(_l("Save"))

    def hours_fields(self) -> list[Any]:
        return [getattr(self, f"hours_{d}") for d in range(7)]

    def validate_max_age(self, field: Any) -> None:
        if (
            field.data is not None
            and self.min_age.data is not None
            and not self.min_age.errors
            and self.min_age.data > field.data
        ):
            raise ValidationError(_l("The minimum age cannot be above the maximum age."))

    def validate_timezone(self, field: Any) -> None:
        if zone(field.data).key != (field.data or "").strip():
            raise ValidationError(_l("Use a timezone name such as Europe/Paris."))

    def weekly_hours(self) -> list[list[Any]] | None:
        """The schedule from the seven day fields, or None after marking field errors."""
        hours: list[list[Any]] = []
        ok = True
        for day, f in enumerate(self.hours_fields()):
            try:
                hours += [[day, o, c] for o, c in parse_day_hours(f.data or "")]
            except ValueError:
                f.errors = [
                    _l(
                        "Write hours like 09:00-17:00, several separated by commas, "
                        "24h, or leave empty when closed."
                    )
                ]
                ok = False
        return hours if ok else None


class BedsForm(HavenForm):
    beds_available = IntegerField(
        _l("Beds free now"),
        validators=[InputRequired(), NumberRange(0, 10000)],
        render_kw={"inputmode": "numeric", "min": 0},
    )
    submit = SubmitField(_l("Update beds"))


def sms_label_error(refused: SmsLabelRefused) -> str:
    """Why an SMS label was refused, for the admin who typed it."""
    if refused.reason == "too_long":
        return _("At most %(max)s characters.", max=SMS_LABEL_MAX)
    if refused.reason == "mixed_scripts":
        return _("Write each word in one alphabet: “%(word)s” mixes look-alike letters.",
                 word=refused.word)
    if refused.reason == "link":
        return _("“%(word)s” looks like a link. Use plain words.", word=refused.word)
    if refused.reason == "phone":
        return _("This looks like a phone number: use at most %(max)s digits.", max=MAX_DIGITS)
    if refused.reason == "word":
        return _("“%(word)s” could tell someone who reads the survivor's phone why she texts "
                 "us. Use a neutral name, such as a district or a town.", word=refused.word)
    return _("Use only letters, digits and single spaces: no punctuation or symbols.")


class AreaForm(HavenForm):
    name = StringField(_l("Name"), validators=[DataRequired(), Length(min=2, max=120)])
    sms_label = StringField(
        _l("SMS label"),
        validators=[Optional(), Length(max=200)],
        render_kw={"autocomplete": "off", "maxlength": SMS_LABEL_MAX},
    )
    parent_id = SelectField(_l("Part of"), coerce=coerce_id)
    latitude = FloatField(_l("Centre latitude"), validators=[Optional(), NumberRange(-90, 90)])
    longitude = FloatField(_l("Centre longitude"), validators=[Optional(), NumberRange(-180, 180)])
    # Survivors' safe hours in this area are read on this clock (else the parent area's).
    timezone = StringField(
        _l("Time zone (optional)"),
        validators=[Optional(), Length(max=64)],
        render_kw={"placeholder": "America/New_York", "autocomplete": "off"},
    )
    submit = SubmitField(_l("Save"))

    def validate_sms_label(self, field: Any) -> None:
        """The one discretion rule (``app.discretion``); the tidied label is kept."""
        try:
            field.data = clean_sms_label(field.data or "")
        except SmsLabelRefused as refused:
            if refused.reason == "empty":
                field.data = None
                return
            raise ValidationError(sms_label_error(refused)) from None
    def validate_timezone(self, field: Any) -> None:
        field.data = (field.data or "").strip()
        if field.data and not valid_zone(field.data):
            raise ValidationError(_l("Use a timezone name such as Europe/Paris."))


class MatchForm(HavenForm):
    """Anonymous mode: criteria only, nothing stored. Posted (not a GET query string) so the
    criteria stay out of the shared tablet's history and the server's access logs."""

    categories = MultiCheckboxField(
        _l("Needs"),
        choices=list(vocab.CATEGORY_LABELS.items()),
        validators=[DataRequired(_l("Choose at least one need."))],
    )
    urgency = SelectField(_l("Urgency"), choices=list(vocab.URGENCY_LABELS.items()), default="soon")
    language = SelectField(
        _l("Language"),
        choices=[("", _l("Not given")), *list(vocab.SURVIVOR_LANGUAGE_LABELS.items())],
        default="",
    )
    age_band = SelectField(
        _l("Age band"),
        choices=[("", _l("Not given")), *list(vocab.AGE_BAND_LABELS.items())],
        default="",
    )
    gender = SelectField(
        _l("Gender"),
        choices=[("", _l("Not given")), *list(vocab.GENDER_LABELS.items())],
        default="",
    )
    area_id = SelectField(_l("Area"), coerce=coerce_id, default=0)
    children = BooleanField(_l("Has children with them"))
    accessibility = MultiCheckboxField(
        _l("Accessibility needs"), choices=list(vocab.ACCESSIBILITY_LABELS.items())
    )
    show_excluded = BooleanField(_l("Also show services excluded, and why"))
    submit = SubmitField(_l("Find services"))
