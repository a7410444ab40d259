"""Times and numbers as people read them (issue 16): one module for every page.

* **Time zone**: every time is shown in the zone of the viewer's organization (its setting,
  ``app.org_settings.zone_name``); Flask-Babel asks ``request_zone`` once per request, so
  Babel's own filters agree with the ones here.
* **With the zone when it may be ambiguous**: ``when(..., zone=True)`` adds the UTC offset
  ("14:05 (GMT+02:00)"); templates ask for it on deadlines and on times someone acts on (answer by,
  danger reported). Any time in the hour a clock change repeats is named too, whatever the
  template asked: 01:30 happens twice that night.
* **Interface language**: dates with Babel's patterns for the UI locale, decimals with its
  separators (``4,3 km`` in Spanish and French).

Templates use the filters ``when``, ``day`` and ``km``; Python code that builds a sentence
(matching reasons) calls ``decimal`` / ``km_number``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from babel.dates import get_timezone_gmt
from flask import Flask, has_request_context
from flask_babel import format_date, format_datetime, format_decimal, get_locale, get_timezone
from flask_login import current_user

from app.auth.org_settings import DEFAULT_ZONE, zone_name


def request_zone() -> str:
    """Flask-Babel's timezone selector: the signed-in user's organization's zone."""
    if has_request_context() and current_user and current_user.is_authenticated:
        return zone_name(current_user.organization)
    return DEFAULT_ZONE


def ambiguous(value: datetime, zone: ZoneInfo) -> bool:
    """Whether the local wall-clock time of ``value`` occurs twice in ``zone`` (the hour
    repeated when the clocks go back)."""
    local = _aware(value).astimezone(zone)
    other = local.replace(fold=1 - local.fold)
    return other.utcoffset() != local.utcoffset()


def when(value: datetime | None, width: str = "medium", zone: bool = False) -> str:
    """Date and time in the organization's zone and the UI locale; the zone's short name
    after it when asked for or when the local time is ambiguous."""
    if value is None:
        return ""
    value = _aware(value)
    text = str(format_datetime(value, width))
    tz = get_timezone()  # a pytz zone (Flask-Babel): its name gives the ZoneInfo
    if tz is None:
        return text
    if zone or ambiguous(value, ZoneInfo(str(tz))):
        # The UTC offset in the locale's form ("GMT+02:00", "UTC+02:00"): exact, and it
        # tells the two 02:30 of the night the clocks go back apart (names may not).
        offset = get_timezone_gmt(value.astimezone(tz), "long", locale=get_locale())
        text = f"{text} ({offset})"
    return text


def day(value: datetime | None, width: str = "medium") -> str:
    """The date of ``value`` in the organization's zone (a late-evening UTC time is the
    next day in Asia), in the UI locale."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = _aware(value).astimezone(get_timezone())
    return str(format_date(value, width))


def decimal(value: float | int, pattern: str | None = None) -> str:
    return str(format_decimal(value, pattern))


def km_number(value: float | int) -> str:
    """A distance in km as the matching reasons show it: whole km from 10, one decimal
    below (``4,3`` in Spanish and French, ``4.3`` in English)."""
    return decimal(value, "#,##0" if value >= 10 else "#,##0.#")


def register(app: Flask) -> None:
    app.add_template_filter(when, "when")
    app.add_template_filter(day, "day")
    app.add_template_filter(km_number, "km")


def _aware(value: datetime) -> datetime:
    """Stored times are UTC; a naive one (SQLite) is read as UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
