"""Figures (issue 7): small cells suppressed and never derivable from totals, organization
scoping, SVG charts that respect the CSP, CSV export of the same suppressed table."""

from __future__ import annotations

import csv
import io
import itertools
import random
from datetime import UTC, date, datetime, timedelta

import pytest

from app.core.extensions import db
from app.models import CaseStatistic, ReferralStatistic
from app.referrals import service as referrals
from app.reports import figures
from tests import factories
from tests.conftest import login_session

# Behaviour that depends on the database, run on both: month grouping is dialect-specific SQL.
pytestmark = pytest.mark.both_databases


def table(cells):
    rows = [f"r{i}" for i in range(len(cells))]
    columns = [f"c{j}" for j in range(len(cells[0]))]
    return figures.suppress(
        figures.Table("t", "T", "Row", rows, columns, {}, {}, [list(r) for r in cells])
    )


def test_a_small_cell_is_hidden_with_a_partner_in_its_row_and_column():
    t = table([[3, 10, 40], [12, 20, 30], [50, 60, 70]])
    grid = t.grid()
    assert grid[0][0] == "<5"
    # Row 0 and column 0 would give the 3 away (total minus the others): each hides a
    # second cell, the smallest visible one.
    assert grid[0][1] == "<5" and grid[1][0] == "<5"
    assert figures.derivable_cells(t) == []
    # Large cells elsewhere, and the totals, stay visible.
    assert grid[2][2] == "70" and grid[3][3] == str(3 + 10 + 40 + 12 + 20 + 30 + 50 + 60 + 70)


def test_a_total_under_5_is_hidden_and_does_not_reveal_its_row():
    t = table([[1, 2], [30, 40]])
    grid = t.grid()
    assert grid[0] == ["<5", "<5", "<5"]
    # Column totals (31, 42) minus row 1 would give the hidden cells back: so row 1's
    # cells are hidden too (the margins stay visible; no single cell can be worked out).
    assert grid[1][:2] == ["<5", "<5"]
    assert figures.derivable_cells(t) == []


def test_a_single_column_table_hides_a_second_cell_or_the_total():
    t = table([[2], [9], [30]])
    grid = t.grid()
    assert grid[0][0] == "<5"
    assert sum(1 for r in range(3) if grid[r][0] == "<5") >= 2 or grid[3][0] == "<5"
    assert figures.derivable_cells(t) == []


def test_zero_counts_are_shown_as_under_5_too():
    t = table([[0, 12], [15, 16]])
    assert t.grid()[0][0] == "<5"


def test_large_tables_are_left_alone():
    t = table([[5, 6], [7, 8]])
    assert t.hidden == set()
    assert t.grid() == [["5", "6", "11"], ["7", "8", "15"], ["12", "14", "26"]]


@pytest.mark.parametrize("seed", range(40))
def test_random_tables_never_show_a_small_count_or_a_derivable_one(seed):
    rng = random.Random(seed)
    nrows, ncols = rng.randint(1, 6), rng.randint(1, 6)
    cells = [
        [rng.choice([0, 1, 2, 3, 4, 5, 6, 9, 20, 100]) for _ in range(ncols)] for _ in range(nrows)
    ]
    t = table(cells)
    for r, c in itertools.product([*range(nrows), -1], [*range(ncols), -1]):
        if t.value(r, c) < 5:
            assert t.shown(r, c) == "<5"
    assert figures.derivable_cells(t) == []


# --- the page ---------------------------------------------------------------------------


@pytest.fixture
def two_orgs(app):
    ours, theirs = factories.make_org(name="Ours"), factories.make_org(name="Theirs")
    area = factories.make_area()
    today = datetime.now(UTC)
    month = date(today.year, today.month, 1)
    for _ in range(6):
        factories.make_case(ours, area=area, needs={"shelter": "soon", "legal": "soon"})
    for _ in range(3):
        factories.make_case(ours, area=area, channel="sms", needs={"medical": "soon"})
    for _ in range(2):  # erased cases count from their statistics
        db.session.add(
            CaseStatistic(
                month=month,
                organization_id=ours.id,
                area_id=area.id,
                channel="tablet",
                age_band="18_24",
                need_categories="shelter",
                reason="retention",
            )
        )
    for _ in range(40):
        db.session.add(
            CaseStatistic(
                month=month,
                organization_id=theirs.id,
                area_id=area.id,
                channel="tablet",
                age_band="18_24",
                need_categories="legal",
                reason="retention",
            )
        )
    for outcome, hours in (("accepted", 2), ("accepted", 30), ("declined", 1)) * 3:
        db.session.add(
            ReferralStatistic(
                month=month,
                organization_id=ours.id,
                area_id=area.id,
                category="legal",
                outcome=outcome,
                answer_hours=hours,
            )
        )
    service = factories.make_service(
        category="shelter", areas=[area], beds_total=10, beds_available=10
    )
    case = factories.make_case(ours, area=area)
    referrals.create_referrals(
        case,
        [
            referrals.ReferralRequest(
                service.id, referrals.ReleaseSpec(service.organization_id, "verbal")
            )
        ],
        None,
        idempotency_key=None,
    )
    db.session.commit()
    return ours, theirs, month


def this_month() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


def test_supervisors_see_their_organizations_figures_suppressed(app, client, two_orgs):
    ours, _theirs, _month = two_orgs
    supervisor = factories.make_user("supervisor", organization=ours)
    db.session.commit()
    login_session(client, supervisor)
    cases = figures.cases_by_month(ours.id)
    row = cases.rows.index(this_month())
    # 6 + 1 tablet cases held + 2 erased = 9 tablet; 3 by SMS (< 5: hidden).
    assert cases.value(row, 0) == 9 and cases.value(row, 1) == 3
    assert cases.shown(row, 1) == "<5"
    assert figures.derivable_cells(cases) == []
    response = client.get("/reports/")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "<svg" in page and "style=" not in page
    assert "Ours" in page and "Theirs" not in page

    export = client.get("/reports/export.csv?table=cases")
    assert export.status_code == 200 and export.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(export.get_data(as_text=True))))
    month_row = next(r for r in rows if r[0] == this_month())
    assert month_row[1:] == cases.grid()[row]
    assert month_row[2] == "<5"
    assert rows[-1][0] == "Total"
    assert client.get("/reports/export.csv?table=nope").status_code == 404


def test_referral_figures_count_live_and_erased_referrals(app, two_orgs):
    ours, _theirs, _month = two_orgs
    table_ = figures.referrals_by_outcome(ours.id)
    legal = table_.rows.index("legal")
    assert table_.value(legal, table_.columns.index("accepted")) == 6
    assert table_.value(legal, table_.columns.index("declined")) == 3
    shelter = table_.rows.index("shelter")
    assert table_.value(shelter, table_.columns.index("pending")) == 1
    assert table_.shown(shelter, table_.columns.index("pending")) == "<5"
    times = figures.answer_times(ours.id)
    assert times.value(legal, times.columns.index("under_4h")) == 6
    assert times.value(legal, times.columns.index("1_3d")) == 3
    assert figures.derivable_cells(table_) == [] and figures.derivable_cells(times) == []


def test_admins_see_every_organization_together(app, client, two_orgs):
    _ours, _theirs, _month = two_orgs
    admin = factories.make_user("admin")
    db.session.commit()
    login_session(client, admin)
    assert client.get("/reports/").status_code == 200
    cases = figures.cases_by_month(None)
    row = cases.rows.index(this_month())
    assert cases.value(row, 0) == 9 + 40
    export = client.get("/reports/export.csv?table=cases").get_data(as_text=True)
    assert "49" in export


@pytest.mark.parametrize("role", ["caseworker", "provider"])
def test_other_roles_do_not_see_figures(app, client, role):
    user = factories.make_user(role)
    db.session.commit()
    login_session(client, user)
    assert client.get("/reports/").status_code == 403
    assert client.get("/reports/export.csv?table=cases").status_code == 403


def test_bed_occupancy_from_daily_snapshots(app):
    from app.retention import service as retention

    factories.make_service(category="shelter", beds_total=10, beds_available=4)
    factories.make_service(category="shelter", beds_total=10, beds_available=6)
    db.session.commit()
    now = datetime.now(UTC)
    assert retention.run(now).results[-1].count == 2
    assert retention.run(now + timedelta(seconds=1)).results[-1].count == 0  # once a day
    rows = figures.bed_occupancy()
    assert rows[-1].month == this_month() and rows[-1].percent == 50
    chart = str(figures.occupancy_chart(rows, "Beds"))
    assert chart.startswith("<svg") and "style=" not in chart and "50%" in chart
