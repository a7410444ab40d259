"""Her safe hours and contact rules (DESIGN §1.11, issue 13 items 1–3). This module owns the
rule; every path that shows or uses a survivor's phone goes through it.

Safe hours are a list of windows: a set of weekdays (Monday = 0, as ``datetime.weekday``)
and a from/to time of day. ``to <= from`` means the window runs past midnight into the next
day (``22:00``–``06:00``); the weekdays are the days a window *starts*. No windows: any time
is safe. They are stored sealed with the case's own key as compact JSON (``dumps`` /
``loads``), in the survivor's time zone (``zone_for``: the case's own zone, else her area's
or its parent's, else ``HAVEN_DEFAULT_TIMEZONE``).

Before this, safe hours were free text. ``parse_legacy`` converts only what reads one way
(``9:00-17:00``, ``18:00 to 21:00``, ``9am-5pm``, with an optional ``weekdays`` /
``weekends`` / ``daily`` prefix); anything else (``9 to 5pm``, ``10-2pm``, ``after 6``) is
kept as it was and flagged (``Case.safe_hours_check``): no outbox SMS reaches her
(``consent.permits(case, "sms")``) until a caseworker saves structured hours or clears them.

Sending (``send_time``): the first instant at or after ``now`` inside a window, in her
zone; the outbox schedules a survivor message then and the worker checks again at the
moment of sending (hours may change meanwhile). Local times that do not exist (the hour
skipped when clocks go forward) are never chosen: the first existing instant inside the
window is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from babel.dates import format_time, get_day_names
from babel.lists import format_list
from flask_babel import get_locale
from flask_babel import gettext as _
from sqlalchemy import select

from app.core.extensions import db
from app.models.areas import Area
from app.models.cases import Case
from app.models.directory import Service

MAX_WINDOWS = 3
DAY = 24 * 60
WEEKDAYS = tuple(range(7))
DAY_CODES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # the JSON export's form


class SafeHoursError(ValueError):
    """Not a valid safe-hours value."""


@dataclass(frozen=True)
class Window:
    """Weekdays the window starts on, and its start and end in minutes after midnight."""

    days: frozenset[int]
    start: int
    end: int  # <= start: ends the next day

    def __post_init__(self) -> None:
        if not self.days or not self.days <= set(WEEKDAYS):
            raise SafeHoursError("a window needs weekdays 0-6")
        if not (0 <= self.start < DAY and 0 <= self.end < DAY):
            raise SafeHoursError("times are minutes of the day")
        if self.start == self.end:
            raise SafeHoursError("a window cannot start and end at the same time")

    @property
    def overnight(self) -> bool:
        return self.end < self.start

    def contains(self, weekday: int, minute: int) -> bool:
        """Whether local ``weekday`` / ``minute`` of the day is inside this window."""
        if not self.overnight:
            return weekday in self.days and self.start <= minute < self.end
        return (weekday in self.days and minute >= self.start) or (
            (weekday - 1) % 7 in self.days and minute < self.end
        )


def hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


_HHMM = re.compile(r"^(\d{1,2}):([0-5]\d)(?::[0-5]\d(?:\.\d{1,6})?)?$")


def minutes_of(text: str) -> int:
    """``"HH:MM"`` or ``"H:MM"`` (seconds, as some browsers send, are dropped) -> minutes
    of the day."""
    match = _HHMM.match((text or "").strip())
    if not match or int(match.group(1)) > 23:
        raise SafeHoursError("not a time")
    return int(match.group(1)) * 60 + int(match.group(2))


def window(days: Iterable[int], start: str, end: str) -> Window:
    return Window(frozenset(int(d) for d in days), minutes_of(start), minutes_of(end))


# --- stored form ---------------------------------------------------------------------------


def _order(windows: Iterable[Window]) -> list[Window]:
    return sorted(windows, key=lambda w: (min(w.days), w.start, w.end, sorted(w.days)))


def dumps(windows: Sequence[Window]) -> str | None:
    """Compact JSON (None for no windows). The keys are chosen so that nothing in it reads
    as a time range to the free-text parser of revisions before 0009: after a downgrade
    old code sees "unreadable safe hours" and sends no automatic text."""
    if not windows:
        return None
    if len(windows) > MAX_WINDOWS:
        raise SafeHoursError("too many windows")
    return json.dumps(
        [
            {"days": sorted(w.days), "from": hhmm(w.start), "to": hhmm(w.end)}
            for w in _order(windows)
        ],
        separators=(",", ":"),
    )


def loads(text: str) -> tuple[Window, ...]:
    """The windows of a stored value; ``SafeHoursError`` when it is not the JSON form
    (legacy free text)."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise SafeHoursError("not structured safe hours") from exc
    if not isinstance(raw, list) or not raw:
        raise SafeHoursError("not structured safe hours")
    windows = []
    for item in raw:
        if not isinstance(item, dict) or set(item) != {"days", "from", "to"}:
            raise SafeHoursError("not structured safe hours")
        days = item["days"]
        if not isinstance(days, list) or not all(type(d) is int for d in days):
            raise SafeHoursError("not structured safe hours")
        if not isinstance(item["from"], str) or not isinstance(item["to"], str):
            raise SafeHoursError("not structured safe hours")
        windows.append(window(days, item["from"], item["to"]))
    return tuple(windows)


@dataclass(frozen=True)
class Recorded:
    """What a case holds: structured windows, or free text from before (to be checked)."""

    windows: tuple[Window, ...] = ()
    legacy: str | None = None


def read(case: Case) -> Recorded:
    raw = case.safe_hours
    if raw is None or not raw.strip():
        return Recorded()
    try:
        return Recorded(loads(raw))
    except SafeHoursError:
        return Recorded(legacy=raw)


def write(case: Case, windows: Sequence[Window]) -> None:
    """Save structured hours (none: any time); this is what clears ``safe_hours_check``."""
    case.safe_hours = dumps(windows)
    case.safe_hours_check = False



# --- free text from before structured hours ------------------------------------------------

_DAY_PREFIXES = {
    "daily": WEEKDAYS,
    "every day": WEEKDAYS,
    "everyday": WEEKDAYS,
    "weekdays": (0, 1, 2, 3, 4),
    "mon-fri": (0, 1, 2, 3, 4),
    "monday-friday": (0, 1, 2, 3, 4),
    "monday to friday": (0, 1, 2, 3, 4),
    "weekends": (5, 6),
    "weekend": (5, 6),
    "sat-sun": (5, 6),
    "saturday-sunday": (5, 6),
}
_PREFIX = re.compile(
    r"^(?:(" + "|".join(re.escape(p) for p in sorted(_DAY_PREFIXES, key=len, reverse=True))
    + r")\s*:?\s+)?(.+)$"
)
# 24-hour: "9:00", "17:30", "18h", "18h30"; 12-hour: "9am", "9:30 pm".
_TIME = r"(\d{1,2})(?:(:)(\d{2})|(h)(\d{2})?)?\s*(am|pm|a\.m\.|p\.m\.)?"
_RANGE = re.compile(r"^" + _TIME + r"\s*(?:-|–|—|to)\s*" + _TIME + r"$")


@dataclass(frozen=True)
class _Time:
    hour: int
    minute: int
    half: str | None  # "am" / "pm" / None
    twentyfour: bool  # written with ":MM" or "h": a 24-hour clock reading is possible
    padded: bool  # "09:00": a leading zero, the 24-hour habit


def _time(groups: tuple[str | None, ...]) -> _Time | None:
    hour_text, colon, colon_min, h_mark, h_min, half = groups
    if hour_text is None:
        return None
    minute_text = colon_min if colon else h_min
    return _Time(
        int(hour_text),
        int(minute_text or 0),
        (half or "").replace(".", "") or None,
        bool(colon or h_mark),
        len(hour_text) == 2 and hour_text.startswith("0"),
    )


def _twelve(t: _Time) -> int | None:
    if not 1 <= t.hour <= 12 or t.minute > 59:
        return None
    hour = t.hour % 12 + (12 if t.half == "pm" else 0)
    return hour * 60 + t.minute


def _range(text: str) -> tuple[int, int] | None:
    match = _RANGE.match(text)
    if not match:
        return None
    start, end = _time(match.groups()[:6]), _time(match.groups()[6:])
    if start is None or end is None:
        return None
    if start.half and end.half:  # both halves say am/pm: one reading
        a, b = _twelve(start), _twelve(end)
        return (a, b) if a is not None and b is not None and a != b else None
    if start.half or end.half:  # "9 to 5pm": is 9 morning or evening?
        return None
    if not (start.twentyfour and end.twentyfour):  # "10-2": 12- or 24-hour clock?
        return None
    if start.minute > 59 or end.minute > 59 or start.hour > 24 or end.hour > 24:
        return None
    if (start.hour == 24 and start.minute) or (end.hour == 24 and end.minute):
        return None
    a, b = (start.hour % 24) * 60 + start.minute, (end.hour % 24) * 60 + end.minute
    if a == b:
        return None
    # Only a 24-hour reading, not 12-hour times without am/pm: an hour past 12, midnight
    # or a leading zero says so ("9:00-11:00" could be evening; "09:00-11:00" is not).
    if not any(t.hour >= 13 or t.hour in (0, 24) or t.padded for t in (start, end)):
        return None
    # Past midnight only from an evening start ("09:00-05:00" is more likely 9 to 5).
    if b < a and start.hour < 13 and not (end.hour in (0, 24) and end.minute == 0):
        return None
    return a, b


def parse_legacy(text: str | None) -> tuple[Window, ...] | None:
    """Strictly read safe hours typed as free text before structured hours: the windows
    when the text reads exactly one way, ``None`` when it does not (it must be checked)."""
    if text is None:
        return None
    cleaned = re.sub(r"\s+", " ", text.strip().casefold())
    if not cleaned:
        return None
    windows: list[Window] = []
    for part in re.split(r"\s*(?:,|;|\band\b)\s*", cleaned):
        match = _PREFIX.match(part)
        if not match:
            return None
        prefix, rest = match.group(1), match.group(2)
        span = _range(rest.strip())
        if span is None:
            return None
        days = _DAY_PREFIXES[prefix] if prefix else WEEKDAYS
        windows.append(Window(frozenset(days), span[0], span[1]))
    if not 1 <= len(windows) <= MAX_WINDOWS:
        return None
    return tuple(windows)


# --- time zones ----------------------------------------------------------------------------


@lru_cache(maxsize=1)
def known_zones() -> frozenset[str]:
    return frozenset(available_timezones() | {"UTC"})


def valid_zone(name: str | None) -> bool:
    return bool(name) and name in known_zones()


def zone_for(case: Case, default: str) -> tuple[str, str]:
    """Her time zone and where it comes from: ``case`` (set on her profile), ``area`` (her
    area's or an enclosing area's) or ``default`` (HAVEN_DEFAULT_TIMEZONE)."""
    if valid_zone(case.timezone):
        return str(case.timezone), "case"
    area = case.area
    seen: set[int] = set()
    while area is not None and area.id not in seen:
        if valid_zone(area.timezone):
            return str(area.timezone), "area"
        seen.add(area.id)
        area = area.parent
    return (default if valid_zone(default) else "UTC"), "default"


def zone_choices(extra: Iterable[str | None] = ()) -> list[str]:
    """A short list for the profile form: the zones already in use (areas, services, the
    default) and any given; any other IANA name can be typed."""
    found = [
        *extra,
        *db.session.scalars(select(Area.timezone).distinct()),
        *db.session.scalars(select(Service.timezone).distinct()),
    ]
    return sorted({str(z) for z in found if valid_zone(z)})


# --- when she may be texted ----------------------------------------------------------------

SEARCH_DAYS = 16  # a weekly window recurs within 7 days; the rest is room for DST gaps


def inside(windows: Sequence[Window], zone: ZoneInfo, at: datetime) -> bool:
    """Whether ``at`` (aware) is inside a window, read on her wall clock."""
    if not windows:
        return True
    local = at.astimezone(zone)
    weekday, minute = local.weekday(), local.hour * 60 + local.minute
    return any(w.contains(weekday, minute) for w in windows)


def _transitions(zone: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """The instants in [start, end] where the zone's UTC offset changes (the first second
    with the new offset)."""

    def offset_at(second: int) -> timedelta | None:
        return datetime.fromtimestamp(second, UTC).astimezone(zone).utcoffset()

    found = []
    here, last = int(start.timestamp()), int(end.timestamp()) + 1
    offset = offset_at(here)
    while here < last:
        there = here + 3600
        next_offset = offset_at(there)
        if next_offset != offset:
            low, high = here, there  # offset_at(low) == offset != offset_at(high)
            while high - low > 1:
                middle = (low + high) // 2
                if offset_at(middle) == offset:
                    low = middle
                else:
                    high = middle
            found.append(datetime.fromtimestamp(high, UTC))
        here, offset = there, next_offset
    return found


def next_send_time(
    windows: Sequence[Window], zone: ZoneInfo, now: datetime
) -> datetime | None:
    """The first instant at or after ``now`` (aware) inside one of ``windows`` on her wall
    clock in ``zone``; ``now`` itself when there are no windows. None only if no instant in
    the next SEARCH_DAYS days qualifies (cannot happen with real zones).

    Between two offset changes the wall clock runs straight, so the first instant inside a
    window is ``now``, a window's start (either occurrence of a repeated wall time), or
    the instant an offset change lands the wall clock inside a window (a start that falls
    in the skipped hour)."""
    now = now.astimezone(UTC)
    if inside(windows, zone, now):
        return now
    first = now.astimezone(zone).date() - timedelta(days=1)
    candidates: list[datetime] = []
    for offset in range(SEARCH_DAYS + 2):
        day: date = first + timedelta(days=offset)
        for w in windows:
            if day.weekday() not in w.days:
                continue
            wall = datetime.combine(day, time(w.start // 60, w.start % 60), tzinfo=zone)
            candidates += [wall.astimezone(UTC), wall.replace(fold=1).astimezone(UTC)]
    candidates += _transitions(zone, now, now + timedelta(days=SEARCH_DAYS + 1))
    return min(
        (c for c in candidates if c >= now and inside(windows, zone, c)), default=None
    )


def send_time(case: Case, now: datetime, default_zone: str) -> datetime | None:
    """When a message to her may go out: ``now`` or later, inside her safe hours in her
    zone. None: no automatic message may go to her at all (safe hours to be checked)."""
    if case.safe_hours_check:
        return None
    recorded = read(case)
    if recorded.legacy is not None:
        return None
    zone_name, _source = zone_for(case, default_zone)
    return next_send_time(recorded.windows, ZoneInfo(zone_name), now)


# --- shown next to her phone ----------------------------------------------------------------


def _time_text(minutes: int, locale: Any) -> str:
    return format_time(time(minutes // 60, minutes % 60), format="short", locale=locale)


def _days_text(days: frozenset[int], locale: Any) -> str:
    if days == frozenset(WEEKDAYS):
        return _("Every day")
    names = get_day_names("abbreviated", locale=locale)
    runs: list[list[int]] = []
    for day in sorted(days):
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    parts = []
    for run in runs:
        if len(run) >= 3:
            parts.append(f"{names[run[0]]}–{names[run[-1]]}")
        else:
            parts.extend(names[d] for d in run)
    return format_list(parts, style="standard", locale=locale)


def describe(windows: Sequence[Window], locale: Any = None) -> list[str]:
    """One line per window in the viewer's language: "Mon–Fri, 9:00 AM – 5:00 PM"."""
    locale = locale or get_locale() or "en"
    lines = []
    for w in _order(windows):
        end = _time_text(w.end, locale)
        if w.overnight:
            end = _("%(time)s (next day)", time=end)
        lines.append(
            _(
                "%(days)s, %(start)s – %(end)s",
                days=_days_text(w.days, locale),
                start=_time_text(w.start, locale),
                end=end,
            )
        )
    return lines


@dataclass(frozen=True)
class ContactRules:
    """Her rules, as shown next to her phone (case page, provider portal and preview,
    export) and applied to texts."""

    do_not_text: bool
    no_voicemail: bool
    windows: tuple[Window, ...]
    zone: str
    zone_source: str  # case / area / default
    needs_check: bool  # old free-text hours not confirmed: no automatic texts
    legacy_text: str | None  # that old text (staff pages only)

    def hours(self) -> list[str]:
        return describe(self.windows)

    def as_export(self) -> dict[str, Any]:
        return {
            "do_not_text": self.do_not_text,
            "no_voicemail": self.no_voicemail,
            "safe_hours": [
                {"days": [DAY_CODES[d] for d in sorted(w.days)], "from": hhmm(w.start),
                 "to": hhmm(w.end)}
                for w in _order(self.windows)
            ],
            "time_zone": self.zone,
            "time_zone_from": self.zone_source,
            "safe_hours_need_checking": self.needs_check,
            "safe_hours_old_text": self.legacy_text,
        }


def contact_rules(case: Case, default_zone: str) -> ContactRules:
    recorded = read(case)
    zone_name, source = zone_for(case, default_zone)
    return ContactRules(
        do_not_text=bool(case.do_not_text),
        no_voicemail=bool(case.no_voicemail),
        windows=recorded.windows,
        zone=zone_name,
        zone_source=source,
        needs_check=bool(case.safe_hours_check) or recorded.legacy is not None,
        legacy_text=recorded.legacy,
    )


def cases_to_check(organization_id: int, limit: int = 50) -> list[tuple[int, str]]:
    """(id, reference) of the organization's cases whose safe hours need checking."""
    rows = db.session.execute(
        select(Case.id, Case.reference)
        .where(
            Case.organization_id == organization_id,
            Case.safe_hours_check.is_(True),
            Case.status != "erased",
        )
        .order_by(Case.id)
        .limit(limit)
    ).all()
    return [(int(i), str(r)) for i, r in rows]
