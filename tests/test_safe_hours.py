"""The safe-hours rule (app/safe_hours.py): the strict reading of old free text, the stored
form, the next send time on her wall clock (with hypothesis: any windows, any zone, any
instant, and instants around clock changes), her zone, and the wording in four languages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import update

from app.consent import safe_hours
from app.consent.safe_hours import (
    SafeHoursError,
    Window,
    describe,
    dumps,
    inside,
    loads,
    next_send_time,
    parse_legacy,
    window,
)
from app.core.extensions import db
from app.models import Area
from tests import factories

ALL = frozenset(range(7))
WEEKDAYS = frozenset(range(5))


def w(days, start: str, end: str) -> Window:
    return window(days, start, end)


# --- old free text: only what reads one way ------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "windows"),
    [
        ("9:00-17:00", (w(ALL, "09:00", "17:00"),)),
        ("18:00 to 21:00", (w(ALL, "18:00", "21:00"),)),
        ("  18:00 – 21:00 ", (w(ALL, "18:00", "21:00"),)),
        ("9am-5pm", (w(ALL, "09:00", "17:00"),)),
        ("9:30 AM to 5 PM", (w(ALL, "09:30", "17:00"),)),
        ("10pm-2am", (w(ALL, "22:00", "02:00"),)),
        ("12am-6am", (w(ALL, "00:00", "06:00"),)),
        ("09:00-11:00", (w(ALL, "09:00", "11:00"),)),
        ("22:00-06:00", (w(ALL, "22:00", "06:00"),)),
        ("18:00-24:00", (w(ALL, "18:00", "00:00"),)),
        ("18h-21h30", (w(ALL, "18:00", "21:30"),)),
        ("weekdays 09:00-12:00", (w(WEEKDAYS, "09:00", "12:00"),)),
        ("Weekends: 10am-1pm", (w({5, 6}, "10:00", "13:00"),)),
        ("weekdays 18:00-20:00; weekends 10:00-14:00",
         (w(WEEKDAYS, "18:00", "20:00"), w({5, 6}, "10:00", "14:00"))),
    ],
)
def test_old_text_that_reads_one_way_is_converted(typed, windows):
    assert parse_legacy(typed) == windows


@pytest.mark.parametrize(
    "typed",
    [
        "9 to 5pm",  # 9 in the morning or the evening?
        "10-2pm",
        "after 6",  # until when?
        "after 6pm",
        "before 9:30",
        "9-17",  # 12- or 24-hour clock?
        "weekdays 9-12",
        "9:00-5:00",  # 9 to 5 on a 12-hour clock, or 9 to 5 next morning?
        "09:00-05:00",
        "10:00-12:00",  # could be evening on a 12-hour clock
        "9:00-9:00",
        "25:00-26:00",
        "13pm-2pm",
        "mon, wed 18:00-20:00",
        "when he is at work",
        "18:00-21:00, 06:00-07:00, 12:00-13:00, 15:00-16:00",  # more than three
        "",
        "   ",
        None,
    ],
)
def test_old_text_that_could_be_read_two_ways_is_not(typed):
    assert parse_legacy(typed) is None


# --- the stored form ----------------------------------------------------------------------------


def test_stored_form_round_trips_and_refuses_anything_else():
    windows = (w(WEEKDAYS, "09:00", "17:00"), w({5}, "22:00", "02:00"))
    stored = dumps(windows)
    assert stored == ('[{"days":[0,1,2,3,4],"from":"09:00","to":"17:00"},'
                      '{"days":[5],"from":"22:00","to":"02:00"}]')
    assert loads(stored) == windows
    assert dumps([]) is None
    for bad in ["9 to 5pm", "[]", "{}", '[{"days":[],"from":"09:00","to":"17:00"}]',
                '[{"days":[7],"from":"09:00","to":"17:00"}]',
                '[{"days":[1],"from":"09:00","to":"09:00"}]',
                '[{"days":[1],"from":"9am","to":"17:00"}]',
                '[{"days":[true],"from":"09:00","to":"17:00"}]',
                '[{"days":[1],"from":"09:00","to":"17:00","x":1}]', "null", "[1]"]:
        with pytest.raises(SafeHoursError):
            loads(bad)
    with pytest.raises(SafeHoursError):
        dumps([w(ALL, "01:00", "02:00")] * 4)


def test_windows_are_checked():
    for days, start, end in [((), "09:00", "10:00"), ((7,), "09:00", "10:00"),
                             ((1,), "09:00", "09:00"), ((1,), "24:00", "01:00"),
                             ((1,), "9", "10:00")]:
        with pytest.raises(SafeHoursError):
            w(days, start, end)
    assert w({1}, "9:05", "10:00:59") == Window(frozenset({1}), 545, 600)


# --- the next send time: examples -----------------------------------------------------------

NEW_YORK = ZoneInfo("America/New_York")


def ny(*args: int) -> datetime:
    return datetime(*args, tzinfo=NEW_YORK)


@pytest.mark.parametrize(
    ("windows", "now", "expected"),
    [
        ((), ny(2026, 1, 15, 3, 0), ny(2026, 1, 15, 3, 0)),  # none recorded: any time
        ((w(ALL, "18:00", "21:00"),), ny(2026, 1, 15, 19, 0), ny(2026, 1, 15, 19, 0)),
        ((w(ALL, "18:00", "21:00"),), ny(2026, 1, 15, 3, 0), ny(2026, 1, 15, 18, 0)),
        ((w(ALL, "18:00", "21:00"),), ny(2026, 1, 15, 21, 0), ny(2026, 1, 16, 18, 0)),
        # Thursday night -> Monday morning, weekdays only.
        ((w(WEEKDAYS, "09:00", "12:00"),), ny(2026, 1, 16, 12, 0), ny(2026, 1, 19, 9, 0)),
        # Past midnight: Saturday 22:00 to Sunday 02:00 is still Saturday's window at 01:00.
        ((w({5}, "22:00", "02:00"),), ny(2026, 1, 18, 1, 0), ny(2026, 1, 18, 1, 0)),
        ((w({5}, "22:00", "02:00"),), ny(2026, 1, 18, 2, 0), ny(2026, 1, 24, 22, 0)),
        # Two windows: the earlier one that is still ahead.
        ((w(ALL, "18:00", "20:00"), w(ALL, "07:00", "08:00")), ny(2026, 1, 15, 6, 0),
         ny(2026, 1, 15, 7, 0)),
    ],
)
def test_next_send_time_examples(windows, now, expected):
    assert next_send_time(windows, NEW_YORK, now) == expected


def test_a_window_starting_in_the_skipped_hour_opens_when_the_clock_jumps():
    # 8 March 2026, New York: 02:00 EST becomes 03:00 EDT; 02:30 does not exist.
    result = next_send_time([w(ALL, "02:30", "03:30")], NEW_YORK, ny(2026, 3, 8, 0, 0))
    assert result == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)  # 03:00 EDT, inside the window
    assert result.astimezone(NEW_YORK).strftime("%H:%M") == "03:00"
    # A window wholly inside the skipped hour is not open that night at all.
    result = next_send_time([w(ALL, "02:10", "02:40")], NEW_YORK, ny(2026, 3, 8, 0, 0))
    assert result.astimezone(NEW_YORK) == ny(2026, 3, 9, 2, 10)


def test_a_repeated_hour_gives_the_first_time_inside_the_window():
    # 1 November 2026: 01:00-02:00 happens twice (EDT, then EST).
    result = next_send_time([w(ALL, "01:30", "01:45")], NEW_YORK,
                            datetime(2026, 11, 1, 5, 40, tzinfo=UTC))  # 01:40 EDT
    assert result == datetime(2026, 11, 1, 5, 40, tzinfo=UTC)
    result = next_send_time([w(ALL, "01:30", "01:45")], NEW_YORK,
                            datetime(2026, 11, 1, 5, 50, tzinfo=UTC))  # 01:50 EDT
    assert result == datetime(2026, 11, 1, 6, 30, tzinfo=UTC)  # 01:30 EST, the second time


# --- the next send time: properties ---------------------------------------------------------

ZONES = sorted(available_timezones())
DST_ZONES = [
    z for z in ZONES
    if ZoneInfo(z).utcoffset(datetime(2026, 1, 15)) != ZoneInfo(z).utcoffset(datetime(2026, 7, 15))
]

minutes = st.integers(0, 24 * 60 - 1)
windows_st = st.lists(
    st.builds(
        lambda days, start, length: Window(frozenset(days), start, (start + length) % (24 * 60)),
        st.sets(st.integers(0, 6), min_size=1),
        minutes,
        st.integers(1, 24 * 60 - 1),
    ),
    min_size=1,
    max_size=3,
)
instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)
)


def check(windows, zone: ZoneInfo, now: datetime) -> None:
    result = next_send_time(windows, zone, now)
    assert result is not None
    assert result >= now, "never before now"
    assert inside(windows, zone, result), "inside a window on her clock"
    local = result.astimezone(zone)
    minute = local.hour * 60 + local.minute
    assert any(x.contains(local.weekday(), minute) for x in windows)
    # The first such instant: just before it she was outside every window (or it is now).
    assert result == now or not inside(windows, zone, result - timedelta(seconds=1))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(windows=windows_st, zone=st.sampled_from(ZONES), now=instants)
def test_any_windows_any_zone_any_instant(windows, zone, now):
    check(windows, ZoneInfo(zone), now)


def _transitions_2026(zone: ZoneInfo) -> list[datetime]:
    return safe_hours._transitions(
        zone, datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    zone_name=st.sampled_from(DST_ZONES),
    which=st.integers(0, 1),
    before=st.integers(-26 * 60, 2 * 60),
    start_shift=st.integers(-90, 90),
    length=st.integers(1, 180),
    days=st.sets(st.integers(0, 6), min_size=1),
)
def test_windows_around_clock_changes(zone_name, which, before, start_shift, length, days):
    """Windows that start in or next to a skipped or repeated hour, asked about shortly
    before or during the change: the chosen local time is still inside a window."""
    zone = ZoneInfo(zone_name)
    changes = _transitions_2026(zone)
    assume(len(changes) > which)
    change = changes[which]
    wall = (change - timedelta(seconds=1)).astimezone(zone)  # the last wall time before it
    start = (wall.hour * 60 + wall.minute + start_shift) % (24 * 60)
    windows = [Window(frozenset(days), start, (start + length) % (24 * 60))]
    check(windows, zone, change + timedelta(minutes=before))


def test_dst_zones_are_in_the_property_tests():
    assert "America/New_York" in DST_ZONES and "Europe/Paris" in DST_ZONES
    assert len(DST_ZONES) > 50 and "Asia/Tokyo" not in DST_ZONES


# --- her zone ------------------------------------------------------------------------------------


def test_her_zone_comes_from_her_case_her_area_its_parent_or_the_default(app):
    region = factories.make_area()
    town = factories.make_area()
    town.parent = region
    case = factories.make_case(area=town)
    assert safe_hours.zone_for(case, "Asia/Kolkata") == ("Asia/Kolkata", "default")
    region.timezone = "America/Chicago"
    assert safe_hours.zone_for(case, "UTC") == ("America/Chicago", "area")
    town.timezone = "America/Denver"
    assert safe_hours.zone_for(case, "UTC") == ("America/Denver", "area")
    case.timezone = "Europe/Madrid"
    assert safe_hours.zone_for(case, "UTC") == ("Europe/Madrid", "case")
    case.timezone = "Not/AZone"  # never chosen on the form; ignored if it got there
    assert safe_hours.zone_for(case, "UTC") == ("America/Denver", "area")
    assert not safe_hours.valid_zone("../../etc/passwd") and not safe_hours.valid_zone("")


def test_a_loop_of_parent_areas_ends(app):
    a, b = factories.make_area(), factories.make_area()
    db.session.execute(update(Area).where(Area.id == a.id).values(parent_id=b.id))
    db.session.execute(update(Area).where(Area.id == b.id).values(parent_id=a.id))
    db.session.expire_all()
    case = factories.make_case(area=db.session.get(Area, a.id))
    assert safe_hours.zone_for(case, "UTC") == ("UTC", "default")


# --- in the viewer's language ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("locale", "shown", "not_shown"),
    [
        ("en", ["Mon–Fri", "6:00\u202fPM", "9:00\u202fPM", "Sat and Sun", "10:00\u202fPM",
                "2:00\u202fAM", "7:30\u202fAM"], ["18:00"]),
        ("es", ["lun–vie", "18:00", "21:00", "sáb y dom", "22:00", "2:00", "7:30"], ["PM"]),
        ("fr", ["lun.–ven.", "18:00", "21:00", "sam. et dim.", "22:00", "02:00", "07:30"],
         ["PM"]),
        ("ar", ["الاثنين–الجمعة", "6:00 م", "9:00 م", "السبت والأحد", "10:00 م", "2:00 ص",
                "7:30 ص"], ["PM", "Mon"]),
    ],
)
def test_described_in_the_viewers_language(app, locale, shown, not_shown):
    """Day names, lists and times come from Babel in the viewer's locale (the phrases
    around them are catalog strings, translated when the catalogs are updated)."""
    windows = [w({5, 6}, "22:00", "02:00"), w(WEEKDAYS, "18:00", "21:00"), w(ALL, "07:00", "07:30")]
    with app.test_request_context():
        lines = describe(windows, locale)
    assert len(lines) == 3
    text = " | ".join(lines)
    for piece in shown:
        assert piece in text, (piece, text)
    for piece in not_shown:
        assert piece not in text, (piece, text)
