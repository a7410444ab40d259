"""De-identified figures for supervisors and funders (issue 7): tables built from live
records and from the statistics erased cases left behind, small cells suppressed, charts as
server-side SVG.

Counting. A case still held counts from its own row; an erased case counts from its
``CaseStatistic`` row (its tombstone is skipped), so nobody is counted twice. Drafts (an
intake that recorded consent but no profile) are not counted, neither while held nor once
discarded (statistics with reason ``draft_discarded``): an abandoned or restarted intake is
not a person helped, and leaving them out both ways keeps a month's figure from changing
when its drafts are discarded. Referrals
likewise: rows of held cases, plus ``ReferralStatistic`` rows. People helped without a
``store`` consent count from ``AnonymousContact`` (channel "no record kept").

Suppression (``suppress``). Every count under 5 — zero included, since "nobody" is also a
statement about a small group — is shown as "<5". Then complementary suppression: a table
is a set of equations (each row's cells add up to its total, each column's to its total,
the totals to the grand total); whenever an equation has exactly one hidden member, that
member could be worked out from the others, so another member is hidden too (the smallest
visible cell, else the total), and this repeats until no equation has a single hidden
member. The CSV export carries the same suppressed table.

Scope. A supervisor sees the figures of their own organization. An admin sees the figures
of every organization together (admins run the platform and report to funders; they never
see cases, and these figures hold no case).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from flask_babel import lazy_gettext as _l
from markupsafe import Markup, escape
from sqlalchemy import func, select, true

from app.core.extensions import db
from app.core.vocab import CATEGORY_LABELS, CLOSE_REASON_LABELS, SERVICE_CATEGORIES
from app.models.cases import CLOSE_REASONS, AnonymousContact, Case, CaseStatistic, Need
from app.models.referrals import REFERRAL_STATUSES, Referral
from app.models.retention import BedSnapshot, ReferralStatistic

THRESHOLD = 5
# Statistics of discarded drafts are kept (a de-identified count) but are not people helped.
COUNTED_STATISTICS = CaseStatistic.reason != "draft_discarded"
SUPPRESSED = "<5"
MONTHS_SHOWN = 12

CHANNEL_LABELS = {
    "tablet": _l("Tablet intake"),
    "sms": _l("SMS hotline"),
    "anonymous": _l("No record kept"),
}
OUTCOME_LABELS = {
    "pending": _l("Waiting for answer"),
    "accepted": _l("Accepted"),
    "declined": _l("Declined"),
    "expired": _l("No answer in time"),
    "cancelled": _l("Cancelled"),
    "arrived": _l("Arrived"),
    "no_show": _l("Did not arrive"),
    "completed": _l("Completed"),
}
ANSWER_BANDS = ("under_4h", "4_24h", "1_3d", "over_3d")
ANSWER_BAND_LABELS = {
    "under_4h": _l("Under 4 hours"),
    "4_24h": _l("4 to 24 hours"),
    "1_3d": _l("1 to 3 days"),
    "over_3d": _l("Over 3 days"),
}


def answer_band(hours: int) -> str:
    if hours < 4:
        return "under_4h"
    if hours < 24:
        return "4_24h"
    if hours < 72:
        return "1_3d"
    return "over_3d"


# --- tables and suppression ---------------------------------------------------------------


@dataclass
class Table:
    """Counts by row and column, with totals. ``cells[r][c]``; shown values via ``shown``."""

    key: str
    title: Any
    row_title: Any
    rows: list[str]
    columns: list[str]
    row_labels: dict[str, Any]
    column_labels: dict[str, Any]
    cells: list[list[int]]
    hidden: set[tuple[int, int]] = field(default_factory=set)  # (-1 = total)

    @property
    def row_totals(self) -> list[int]:
        return [sum(row) for row in self.cells]

    @property
    def column_totals(self) -> list[int]:
        return [
            sum(self.cells[r][c] for r in range(len(self.rows))) for c in range(len(self.columns))
        ]

    @property
    def grand_total(self) -> int:
        return sum(self.row_totals)

    def value(self, r: int, c: int) -> int:
        if r == -1 and c == -1:
            return self.grand_total
        if r == -1:
            return self.column_totals[c]
        if c == -1:
            return self.row_totals[r]
        return self.cells[r][c]

    def shown(self, r: int, c: int) -> str:
        return SUPPRESSED if (r, c) in self.hidden else str(self.value(r, c))

    def grid(self) -> list[list[str]]:
        """The suppressed table as text, totals last (what the page and the CSV show)."""
        columns = [*range(len(self.columns)), -1]
        return [[self.shown(r, c) for c in columns] for r in [*range(len(self.rows)), -1]]


def suppress(table: Table) -> Table:
    """Primary suppression of every count under ``THRESHOLD`` (cells and totals), then
    complementary suppression until no row, column or total equation has exactly one
    hidden member (see the module docstring)."""
    nrows, ncols = len(table.rows), len(table.columns)
    hidden: set[tuple[int, int]] = set()
    for r in [*range(nrows), -1]:
        for c in [*range(ncols), -1]:
            if table.value(r, c) < THRESHOLD:
                hidden.add((r, c))
    # Each equation: its members (cells) and which one is the total.
    equations: list[tuple[list[tuple[int, int]], tuple[int, int]]] = [
        ([(r, c) for c in range(ncols)], (r, -1)) for r in [*range(nrows), -1]
    ]
    equations.extend(([(r, c) for r in range(nrows)], (-1, c)) for c in [*range(ncols), -1])
    changed = True
    while changed:
        changed = False
        for parts, total in equations:
            members = [*parts, total]
            if sum(1 for m in members if m in hidden) != 1:
                continue
            candidates = sorted(
                (p for p in parts if p not in hidden), key=lambda p: (table.value(*p), p)
            )
            hidden.add(candidates[0] if candidates else total)
            changed = True
    table.hidden = hidden
    return table


def derivable_cells(table: Table) -> list[tuple[int, int]]:
    """Hidden cells that one equation gives away (for tests: must be empty)."""
    found = []
    nrows, ncols = len(table.rows), len(table.columns)
    lines = [([(r, c) for c in range(ncols)] + [(r, -1)]) for r in [*range(nrows), -1]]
    lines += [([(r, c) for r in range(nrows)] + [(-1, c)]) for c in [*range(ncols), -1]]
    for members in lines:
        hidden = [m for m in members if m in table.hidden]
        if len(hidden) == 1:
            found.append(hidden[0])
    return found


# --- data ---------------------------------------------------------------------------------


def _month_text(column: Any, is_date: bool = False) -> Any:
    if db.session.get_bind().dialect.name == "postgresql":
        if is_date:
            return func.to_char(column, "YYYY-MM")
        return func.to_char(func.timezone("UTC", column), "YYYY-MM")
    return func.substr(column, 1, 7)


def months_window(today: date | None = None, count: int = MONTHS_SHOWN) -> list[str]:
    today = today or datetime.now(UTC).date()
    year, month = today.year, today.month
    out = []
    for _ in range(count):
        out.append(f"{year:04d}-{month:02d}")
        month -= 1
        if month == 0:
            year, month = year - 1, 12
    return list(reversed(out))


def _scoped(query: Any, column: Any, organization_id: int | None) -> Any:
    return query if organization_id is None else query.where(column == organization_id)


def _first_day(month: str) -> date:
    return date(int(month[:4]), int(month[5:7]), 1)


def _month_labels(months: Iterable[str]) -> dict[str, str]:
    return {m: m for m in months}


def cases_by_month(organization_id: int | None, today: date | None = None) -> Table:
    months = months_window(today)
    first = _first_day(months[0])
    columns = ["tablet", "sms", "anonymous"]
    counts: dict[tuple[str, str], int] = {}

    def add(rows: Iterable[Any]) -> None:
        for month, channel, n in rows:
            counts[(month, channel)] = counts.get((month, channel), 0) + int(n)

    month = _month_text(Case.created_at)
    add(
        db.session.execute(
            _scoped(
                select(month, Case.channel, func.count(Case.id)).where(
                    Case.status != "erased",
                    ~Case.is_draft,
                    Case.created_at >= datetime(first.year, first.month, 1, tzinfo=UTC),
                ),
                Case.organization_id,
                organization_id,
            ).group_by(month, Case.channel)
        )
    )
    smonth = _month_text(CaseStatistic.month, is_date=True)
    add(
        db.session.execute(
            _scoped(
                select(smonth, CaseStatistic.channel, func.count(CaseStatistic.id)).where(
                    CaseStatistic.month >= first, COUNTED_STATISTICS
                ),
                CaseStatistic.organization_id,
                organization_id,
            ).group_by(smonth, CaseStatistic.channel)
        )
    )
    amonth = _month_text(AnonymousContact.day, is_date=True)
    add(
        (m, "anonymous", n)
        for m, n in db.session.execute(
            _scoped(
                select(amonth, func.count(AnonymousContact.id)).where(
                    AnonymousContact.day >= first
                ),
                AnonymousContact.organization_id,
                organization_id,
            ).group_by(amonth)
        )
    )
    cells = [[counts.get((m, c), 0) for c in columns] for m in months]
    return suppress(
        Table(
            "cases",
            _l("People helped by month and channel"),
            _l("Month"),
            months,
            columns,
            _month_labels(months),
            CHANNEL_LABELS,
            cells,
        )
    )


def needs_by_month(organization_id: int | None, today: date | None = None) -> Table:
    months = months_window(today)
    first = _first_day(months[0])
    columns = list(SERVICE_CATEGORIES)
    counts: dict[tuple[str, str], int] = {}
    month = _month_text(Case.created_at)
    for m, category, n in db.session.execute(
        _scoped(
            select(month, Need.category, func.count(Need.id))
            .join(Case, Case.id == Need.case_id)
            .where(
                Case.status != "erased",
                ~Case.is_draft,
                Case.created_at >= datetime(first.year, first.month, 1, tzinfo=UTC),
            ),
            Case.organization_id,
            organization_id,
        ).group_by(month, Need.category)
    ):
        counts[(m, category)] = counts.get((m, category), 0) + int(n)
    for model, day_column, counted in (
        (CaseStatistic, CaseStatistic.month, COUNTED_STATISTICS),
        (AnonymousContact, AnonymousContact.day, true()),
    ):
        m_expr = _month_text(day_column, is_date=True)
        for m, categories, n in db.session.execute(
            _scoped(
                select(m_expr, model.need_categories, func.count(model.id)).where(
                    day_column >= first, counted
                ),
                model.organization_id,
                organization_id,
            ).group_by(m_expr, model.need_categories)
        ):
            for category in (categories or "").split(","):
                if category:
                    counts[(m, category)] = counts.get((m, category), 0) + int(n)
    cells = [[counts.get((m, c), 0) for c in columns] for m in months]
    return suppress(
        Table(
            "needs",
            _l("Needs by month (a person may have several)"),
            _l("Month"),
            months,
            columns,
            _month_labels(months),
            CATEGORY_LABELS,
            cells,
        )
    )


def referrals_by_outcome(organization_id: int | None) -> Table:
    rows = list(SERVICE_CATEGORIES)
    columns = list(REFERRAL_STATUSES)
    counts: dict[tuple[str, str], int] = {}
    for category, status, n in db.session.execute(
        _scoped(
            select(Referral.category, Referral.status, func.count(Referral.id))
            .join(Case, Case.id == Referral.case_id)
            .where(Case.status != "erased"),
            Referral.referring_organization_id,
            organization_id,
        ).group_by(Referral.category, Referral.status)
    ):
        counts[(category, status)] = counts.get((category, status), 0) + int(n)
    for category, outcome, n in db.session.execute(
        _scoped(
            select(
                ReferralStatistic.category,
                ReferralStatistic.outcome,
                func.count(ReferralStatistic.id),
            ),
            ReferralStatistic.organization_id,
            organization_id,
        ).group_by(ReferralStatistic.category, ReferralStatistic.outcome)
    ):
        counts[(category, outcome)] = counts.get((category, outcome), 0) + int(n)
    cells = [[counts.get((r, c), 0) for c in columns] for r in rows]
    return suppress(
        Table(
            "referrals",
            _l("Referrals by service category and outcome"),
            _l("Category"),
            rows,
            columns,
            CATEGORY_LABELS,
            OUTCOME_LABELS,
            cells,
        )
    )


def answer_times(organization_id: int | None) -> Table:
    rows = list(SERVICE_CATEGORIES)
    columns = list(ANSWER_BANDS)
    counts: dict[tuple[str, str], int] = {}
    query = _scoped(
        select(Referral.category, Referral.created_at, Referral.responded_at)
        .join(Case, Case.id == Referral.case_id)
        .where(Case.status != "erased", Referral.responded_at.is_not(None)),
        Referral.referring_organization_id,
        organization_id,
    )
    for category, created, responded in db.session.execute(query.execution_options(yield_per=1000)):
        hours = max(0, int((responded - created).total_seconds() // 3600))
        key = (category, answer_band(hours))
        counts[key] = counts.get(key, 0) + 1
    for category, hours, n in db.session.execute(
        _scoped(
            select(
                ReferralStatistic.category,
                ReferralStatistic.answer_hours,
                func.count(ReferralStatistic.id),
            ).where(ReferralStatistic.answer_hours.is_not(None)),
            ReferralStatistic.organization_id,
            organization_id,
        ).group_by(ReferralStatistic.category, ReferralStatistic.answer_hours)
    ):
        key = (category, answer_band(int(hours)))
        counts[key] = counts.get(key, 0) + int(n)
    cells = [[counts.get((r, c), 0) for c in columns] for r in rows]
    return suppress(
        Table(
            "answer_times",
            _l("Time to the provider's answer"),
            _l("Category"),
            rows,
            columns,
            CATEGORY_LABELS,
            ANSWER_BAND_LABELS,
            cells,
        )
    )


@dataclass
class Occupancy:
    month: str
    beds: int  # bed-days counted
    occupied: int

    @property
    def percent(self) -> int | None:
        return round(100 * self.occupied / self.beds) if self.beds else None


def bed_occupancy(today: date | None = None) -> list[Occupancy]:
    """Average shelter occupancy per month from the daily snapshots (all shelters: beds are
    capacity, shown in the directory to all staff anyway; no person is counted)."""
    months = months_window(today)
    first = _first_day(months[0])
    month = _month_text(BedSnapshot.day, is_date=True)
    found = {
        m: (int(total or 0), int(free or 0))
        for m, total, free in db.session.execute(
            select(month, func.sum(BedSnapshot.beds_total), func.sum(BedSnapshot.beds_available))
            .where(BedSnapshot.day >= first)
            .group_by(month)
        )
    }
    return [
        Occupancy(m, found.get(m, (0, 0))[0], found.get(m, (0, 0))[0] - found.get(m, (0, 0))[1])
        for m in months
    ]


def close_reasons(organization_id: int | None) -> Table:
    """Why cases were closed (issue 16), by channel: closed cases still held, and the
    statistics of erased cases that had been closed (an erased case counts once: its row
    no longer has a reason)."""
    rows = list(CLOSE_REASONS)
    columns = ["tablet", "sms"]
    counts: dict[tuple[str, str], int] = {}
    for query in (
        _scoped(
            select(Case.close_reason, Case.channel, func.count(Case.id))
            .where(Case.status == "closed", Case.close_reason.is_not(None))
            .group_by(Case.close_reason, Case.channel),
            Case.organization_id,
            organization_id,
        ),
        _scoped(
            select(CaseStatistic.close_reason, CaseStatistic.channel, func.count(CaseStatistic.id))
            .where(CaseStatistic.close_reason.is_not(None))
            .group_by(CaseStatistic.close_reason, CaseStatistic.channel),
            CaseStatistic.organization_id,
            organization_id,
        ),
    ):
        for reason, channel, n in db.session.execute(query):
            counts[(reason, channel)] = counts.get((reason, channel), 0) + int(n)
    cells = [[counts.get((r, c), 0) for c in columns] for r in rows]
    return suppress(
        Table(
            "close_reasons",
            _l("Cases closed, by reason and channel"),
            _l("Reason"),
            rows,
            columns,
            CLOSE_REASON_LABELS,
            CHANNEL_LABELS,
            cells,
        )
    )


def all_tables(organization_id: int | None, today: date | None = None) -> list[Table]:
    return [
        cases_by_month(organization_id, today),
        needs_by_month(organization_id, today),
        referrals_by_outcome(organization_id),
        answer_times(organization_id),
        close_reasons(organization_id),
    ]


# --- SVG ----------------------------------------------------------------------------------


def bar_chart(
    labels: Sequence[str],
    values: Sequence[int | None],
    shown: Sequence[str],
    title: str,
    *,
    maximum: int | None = None,
    unit: str = "",
) -> Markup:
    """A horizontal bar chart as inline SVG (presentation attributes and CSS classes only,
    no style attributes: the CSP forbids inline styles). ``values`` None = suppressed:
    drawn as an outlined stub labelled "<5"."""
    row_h, label_w, bar_w, pad = 28, 150, 360, 8
    height = pad * 2 + row_h * max(1, len(labels))
    width = label_w + bar_w + 80
    top = max([v for v in values if v is not None] + [maximum or 0, 1])
    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}"'
        f' width="100%" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for i, (label, value, text_value) in enumerate(zip(labels, values, shown, strict=True)):
        y = pad + i * row_h
        parts.append(
            f'<text class="chart-label" x="{label_w - 6}" y="{y + 18}" '
            f'text-anchor="end">{escape(label)}</text>'
        )
        if value is None:
            parts.append(
                f'<rect class="chart-bar suppressed" x="{label_w}" y="{y + 4}" width="12" '
                f'height="{row_h - 8}"/>'
            )
            w = 12
        else:
            w = max(1, round(bar_w * value / top)) if value else 0
            if w:
                parts.append(
                    f'<rect class="chart-bar" x="{label_w}" y="{y + 4}" width="{w}" '
                    f'height="{row_h - 8}"/>'
                )
        parts.append(
            f'<text class="chart-value" x="{label_w + w + 6}" y="{y + 18}">'
            f"{escape(text_value)}{escape(unit)}</text>"
        )
    parts.append("</svg>")
    # Every text part above went through escape(); numbers are formatted by us.
    return Markup("".join(parts))  # noqa: S704


def table_chart(table: Table) -> Markup:
    """Bars for the row totals of a suppressed table."""
    labels = [str(table.row_labels.get(r, r)) for r in table.rows]
    values = [
        None if (i, -1) in table.hidden else table.value(i, -1) for i in range(len(table.rows))
    ]
    shown = [table.shown(i, -1) for i in range(len(table.rows))]
    return bar_chart(labels, values, shown, str(table.title))


def occupancy_chart(rows: list[Occupancy], title: str) -> Markup:
    labels = [r.month for r in rows]
    values = [r.percent for r in rows]
    shown = ["–" if r.percent is None else str(r.percent) for r in rows]
    return bar_chart(
        labels, [v if v is not None else 0 for v in values], shown, title, maximum=100, unit="%"
    )


def csv_rows(table: Table) -> list[list[str]]:
    header = [
        str(table.row_title),
        *(str(table.column_labels.get(c, c)) for c in table.columns),
        str(_l("Total")),
    ]
    body = []
    grid = table.grid()
    for i, r in enumerate([*table.rows, None]):
        label = str(_l("Total")) if r is None else str(table.row_labels.get(r, r))
        body.append([label, *grid[i]])
    return [header, *body]
