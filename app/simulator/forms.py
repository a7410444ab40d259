from __future__ import annotations

import re
from typing import Any

from flask_babel import lazy_gettext as _l
from wtforms import HiddenField, SelectField, StringField, SubmitField
from wtforms.validators import DataRequired, Length, Optional, Regexp, ValidationError

from app.core.crypto import InvalidPhoneNumber, normalize_phone
from app.core.inputs import HavenForm

CALL_SID_RE = re.compile(r"^CA[0-9a-f]{32}$")
STEP_RE = re.compile(r"^/voice/step\?n=[0-9]{1,3}$")


class PhoneForm(HavenForm):
    number = StringField(
        _l("Phone number"), validators=[DataRequired(message=_l("Enter a phone number."))]
    )
    channel = SelectField(
        _l("Channel"),
        choices=[("sms", _l("SMS")), ("whatsapp", _l("WhatsApp")),
                 ("voice", _l("Voice call (keypad)"))],
    )
    message = StringField(
        _l("Message, or keys to press"),
        validators=[Length(max=1600, message=_l("At most 1,600 characters."))],
    )
    call_sid = HiddenField(validators=[Optional(), Regexp(CALL_SID_RE)])
    next_step = HiddenField(validators=[Optional(), Regexp(STEP_RE)])
    submit = SubmitField(_l("Send"))

    e164 = ""

    def validate_number(self, field: Any) -> None:
        try:
            self.e164 = normalize_phone(field.data or "")
        except InvalidPhoneNumber:
            raise ValidationError(_l("Enter a valid phone number, e.g. +14155550123.")) from None

    def validate_message(self, field: Any) -> None:
        text = (field.data or "").strip()
        if self.channel.data == "voice":
            if text and not re.fullmatch(r"[0-9*#]{1,20}", text):
                raise ValidationError(_l("On a call, press keys: digits, * and # only."))
        elif not text:
            raise ValidationError(_l("Write a message."))
