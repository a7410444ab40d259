"""What Haven accepts from a request, whatever the view (issue 14 §3, §4).

* **Ids.** Every id column is a PostgreSQL ``integer``: an id outside 1..2^31-1 can name no
  row, and handed to the database it raised OverflowError (SQLite) or DataError (PostgreSQL),
  a 500. ``IdConverter`` replaces Flask's ``int`` converter app-wide, so every ``<int:...>``
  in a URL accepts only such ids and routing answers 404 for the rest; ``coerce_id`` (the
  ``coerce`` of every id field), ``parse_id`` and ``query_id`` do the same for ids in forms
  and query strings (a field error or a 400).
* **NUL bytes.** PostgreSQL text cannot hold ``\\x00``: a NUL in any value raised DataError, a
  500. ``app.security.refuse_nul_bytes`` (a ``before_request`` hook ahead of the gate and
  CSRF) answers 400 for a NUL in the path or query string, and in the form body of an
  endpoint that shows no form; forms refuse it themselves, with a field error, because every
  form is a ``HavenForm`` (a test checks that).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from flask import abort, request
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from werkzeug.routing import IntegerConverter, Map

MAX_ID = 2**31 - 1
_ID_TEXT = re.compile(r"[0-9]{1,10}")  # ASCII digits only ('٦'.isdigit() is True)
NUL = "\x00"
NUL_MESSAGE = _l("This field contains a character that cannot be used here. Please retype it.")
_BUTTON_FIELDS = frozenset({"CSRFTokenField", "SubmitField"})


class IdConverter(IntegerConverter):
    """``<int:name>``: a row id, 1..2^31-1, written the one way ``url_for`` writes it (no
    sign, no leading zero, ASCII digits). Anything else matches no rule: 404."""

    regex = r"[1-9][0-9]{0,9}"

    def __init__(self, map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("min", 1)
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)


def parse_id(value: object) -> int | None:
    """An id from a form or query string (1..2^31-1, ASCII digits), or None."""
    if not isinstance(value, str) or not _ID_TEXT.fullmatch(value):
        return None
    number = int(value)
    return number if 1 <= number <= MAX_ID else None


def coerce_id(value: object) -> int:
    """``coerce`` of a select field whose choices are ids (0 stands for the forms' "none"
    choice). Raises ValueError, which WTForms turns into a field error, for anything else:
    the value never reaches a query."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ID:
        return value
    if value == "0" or value == 0:
        return 0
    number = parse_id(value)
    if number is None:
        raise ValueError("not an id")
    return number


def query_id(name: str) -> int | None:
    """An optional id in the query string: None when absent, empty or 0 ("any"); 400 for
    anything else that is not an id."""
    raw = request.args.get(name, "")
    if raw in ("", "0"):
        return None
    number = parse_id(raw)
    if number is None:
        abort(400)
    return number


def has_nul(values: Iterable[Any]) -> bool:
    return any(isinstance(v, str) and NUL in v for v in values)


class HavenForm(FlaskForm):
    """The base of every form: a NUL byte in any field is a field error before any other
    validator (one may query the database) runs. ``refused_nul`` tells the sign-in views,
    which count such an attempt like a wrong password."""

    refused_nul = False

    def validate(self, extra_validators: Any = None) -> bool:
        nul_fields = [f for f in self if has_nul(getattr(f, "raw_data", None) or ())]
        self.refused_nul = bool(nul_fields)
        if nul_fields:
            if all(f.type in _BUTTON_FIELDS for f in self):
                abort(400)  # a button: no field to show the error beside
            for field in self:
                field.errors = [NUL_MESSAGE] if field in nul_fields else []
            return False
        return bool(super().validate(extra_validators=extra_validators))
