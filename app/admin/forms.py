from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import BooleanField, PasswordField, SelectField, StringField, SubmitField
from wtforms.validators import DataRequired, Length, Optional, Regexp

from app.core.inputs import HavenForm, coerce_id

ROLE_LABELS = {
    "admin": _l("Administrator"),
    "supervisor": _l("Supervisor"),
    "caseworker": _l("Caseworker"),
    "provider": _l("Service provider"),
}
ORG_KIND_LABELS = {
    "operator": _l("Haven operator"),
    "ngo": _l("NGO (caseworkers)"),
    "provider": _l("Service provider"),
}


class UserForm(HavenForm):
    username = StringField(
        _l("Username"),
        validators=[
            DataRequired(),
            Length(min=3, max=64),
            Regexp(
                r"^[A-Za-z0-9._-]+$",
                message=_l("Use letters, digits, dots, dashes or underscores."),
            ),
        ],
        render_kw={"autocomplete": "off", "autocapitalize": "none", "spellcheck": "false"},
    )
    organization_id = SelectField(
        _l("Organization"), coerce=coerce_id, validators=[DataRequired()]
    )
    role = SelectField(_l("Role"), choices=list(ROLE_LABELS.items()), validators=[DataRequired()])
    password = PasswordField(
        _l("Password"),
        validators=[DataRequired(), Length(max=256)],
        render_kw={"autocomplete": "new-password"},
    )
    submit = SubmitField(_l("Create user"))


class UserEditForm(HavenForm):
    organization_id = SelectField(
        _l("Organization"), coerce=coerce_id, validators=[DataRequired()]
    )
    role = SelectField(_l("Role"), choices=list(ROLE_LABELS.items()), validators=[DataRequired()])
    active = BooleanField(_l("Account active"))
    reset_totp = BooleanField(_l("Reset two-step sign-in (lost phone)"))
    new_password = PasswordField(
        _l("Set a new password (leave empty to keep)"),
        validators=[Optional(), Length(max=256)],
        render_kw={"autocomplete": "new-password"},
    )
    submit = SubmitField(_l("Save"))


class OrganizationForm(HavenForm):
    name = StringField(_l("Name"), validators=[DataRequired(), Length(min=2, max=200)])
    kind = SelectField(
        _l("Kind"), choices=list(ORG_KIND_LABELS.items()), validators=[DataRequired()]
    )
    totp_required = BooleanField(_l("Require two-step sign-in for every user"))
    # Settings (app.org_settings checks them: one rule, one place).
    timezone = StringField(
        _l("Time zone (every time is shown in it)"),
        validators=[DataRequired(), Length(max=64)],
        default="UTC",
        render_kw={"placeholder": "Europe/Paris", "autocomplete": "off", "spellcheck": "false"},
    )
    contact_phone = StringField(
        _l("Contact line (providers call it about this organization's referrals)"),
        validators=[Optional(), Length(max=32)],
        render_kw={"type": "tel", "autocomplete": "off"},
    )
    dialing_region = StringField(
        _l("Country of phone numbers typed without a country code (two letters, e.g. FR)"),
        validators=[Optional(), Length(max=2)],
        render_kw={"autocomplete": "off", "spellcheck": "false"},
    )
    submit = SubmitField(_l("Save"))
