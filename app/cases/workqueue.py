"""The work queue (issue 16): what needs a caseworker now, most urgent first, each item one
tap from acting on it — and, for a supervisor, the team's queue, unassigned cases,
escalations and each caseworker's load.

What is in the queue, in this order:

1. ``danger`` — a survivor reported danger on the hotline, not yet acknowledged
   (``app.danger``);
2. ``new_sms`` — a hotline case no caseworker has taken up yet (no profile);
3. ``escalated`` — an accepted referral with no arrival, still open ``escalate_after`` past
   the arrival threshold (on the supervisor's queue too);
4. ``declined`` / ``expired`` — a referral the provider declined or let expire, not yet
   followed by another referral of the same case and category (re-refer);
5. ``unanswered`` — a pending referral older than the answer threshold (shelter: hours;
   other services: working days, Monday to Friday);
6. ``no_arrival`` — an accepted referral with no arrival after the arrival threshold;
7. ``follow_up`` — the newest follow-up of the case asks for the next one today or before.

Drafts and consent re-asks keep their own lists on the home page (``app.cases.drafts``,
``retention/_tasks.html``), counted here with the rest.

An item holds the case's reference, its alias and the reason only (nothing else about the
survivor). Each kind is one query for the whole organization; the aliases come from one
more query of the cases with their keys: no query per case. A caseworker's queue is her
cases (``Case.assigned_to_id``) plus the organization's danger reports and new hotline
cases (unassigned, waiting for anyone to take them); a supervisor's is the organization's.

Time comes in as ``now`` and the thresholds as a ``Thresholds`` value (the view reads them
from the configuration), so tests move the clock instead of sleeping.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ScalarSelect, Select, and_, exists, func, or_, select
from sqlalchemy.orm import aliased, selectinload

from app.cases import danger
from app.core.extensions import db
from app.models.accounts import User
from app.models.cases import Case
from app.models.followups import FollowUp
from app.models.referrals import Referral
from app.retention.service import open_tasks, open_tasks_select

KINDS = (
    "danger",
    "new_sms",
    "escalated",
    "declined",
    "expired",
    "unanswered",
    "no_arrival",
    "follow_up",
)
LIMIT = 100


@dataclass(frozen=True)
class Thresholds:
    """When a referral needs the caseworker (DESIGN §1.5, closed loop)."""

    unanswered_shelter: timedelta = timedelta(hours=4)
    unanswered_working_days: int = 2
    arrival_shelter: timedelta = timedelta(hours=48)
    arrival_other: timedelta = timedelta(days=7)
    escalate_after: timedelta = timedelta(hours=24)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Thresholds:
        return cls(
            unanswered_shelter=config["QUEUE_UNANSWERED_SHELTER"],
            unanswered_working_days=config["QUEUE_UNANSWERED_WORKING_DAYS"],
            arrival_shelter=config["QUEUE_ARRIVAL_SHELTER"],
            arrival_other=config["QUEUE_ARRIVAL_OTHER"],
            escalate_after=config["QUEUE_ESCALATE_AFTER"],
        )


@dataclass
class Item:
    kind: str
    case_id: int
    since: datetime | date
    referral_id: int | None = None
    category: str | None = None
    reference: str = ""
    alias: str | None = None


@dataclass
class Queue:
    items: list[Item] = field(default_factory=list)
    drafts: int = 0
    consent_tasks: int = 0
    # Supervisors: open cases nobody is responsible for, and open cases per person.
    unassigned: int = 0
    load: list[tuple[str, int]] = field(default_factory=list)

    @property
    def count(self) -> int:
        """What the navigation shows: everything waiting on the home page."""
        return len(self.items) + self.drafts + self.consent_tasks + self.unassigned

    def of(self, *kinds: str) -> list[Item]:
        return [i for i in self.items if i.kind in kinds]


def working_days_before(now: datetime, days: int) -> datetime:
    """The moment ``days`` working days (Monday to Friday) before ``now``: a referral made
    then has waited that many working days now. Weekends do not count."""
    at = now
    left = days
    while left > 0:
        at -= timedelta(days=1)
        if at.weekday() < 5:
            left -= 1
    return at


def _scope(organization_id: int, user_id: int | None) -> list[Any]:
    where: list[Any] = [Case.organization_id == organization_id, Case.status == "open"]
    if user_id is not None:
        where.append(Case.assigned_to_id == user_id)
    return where


def _referral_select(
    organization_id: int, user_id: int | None, now: datetime, t: Thresholds
) -> Select[*tuple[Any, ...]]:
    """The referrals that need the caseworker, with what decides their kind."""
    later = aliased(Referral)
    superseded = exists().where(
        later.case_id == Referral.case_id,
        later.category == Referral.category,
        later.id > Referral.id,
    )
    shelter = Referral.category == "shelter"
    arrival_due = or_(
        and_(shelter, Referral.responded_at <= now - t.arrival_shelter),
        and_(~shelter, Referral.responded_at <= now - t.arrival_other),
    )
    escalated = or_(
        and_(shelter, Referral.responded_at <= now - t.arrival_shelter - t.escalate_after),
        and_(~shelter, Referral.responded_at <= now - t.arrival_other - t.escalate_after),
    )
    unanswered = or_(
        and_(shelter, Referral.created_at <= now - t.unanswered_shelter),
        and_(~shelter,
             Referral.created_at <= working_days_before(now, t.unanswered_working_days)),
    )
    return (
        select(
            Referral.id, Referral.case_id, Referral.category, Referral.status,
            Referral.created_at, Referral.responded_at, Referral.updated_at,
            escalated.label("escalated"),
        )
        .join(Case, Case.id == Referral.case_id)
        .where(
            Referral.referring_organization_id == organization_id,
            *_scope(organization_id, user_id),
            or_(
                and_(Referral.status.in_(("declined", "expired")), ~superseded),
                and_(Referral.status == "pending", unanswered),
                and_(Referral.status == "accepted", arrival_due),
            ),
        )
    )


def _referral_items(
    organization_id: int, user_id: int | None, now: datetime, t: Thresholds
) -> list[Item]:
    rows = db.session.execute(
        _referral_select(organization_id, user_id, now, t).order_by(Referral.id).limit(LIMIT)
    ).all()
    items = []
    for row in rows:
        if row.status == "accepted":
            kind = "escalated" if row.escalated else "no_arrival"
            since = row.responded_at
        elif row.status == "pending":
            kind, since = "unanswered", row.created_at
        else:
            kind, since = row.status, row.responded_at or row.updated_at
        items.append(Item(kind, row.case_id, since, row.id, row.category))
    return items


def _follow_up_select(
    organization_id: int, user_id: int | None, today: date
) -> Select[*tuple[Any, ...]]:
    """The newest follow-up of each case, when it asks for the next one today or before."""
    newer = aliased(FollowUp)
    return (
        select(FollowUp.case_id, FollowUp.next_on)
        .join(Case, Case.id == FollowUp.case_id)
        .where(
            *_scope(organization_id, user_id),
            FollowUp.next_on <= today,
            ~exists().where(newer.case_id == FollowUp.case_id, newer.id > FollowUp.id),
        )
    )


def _follow_up_items(organization_id: int, user_id: int | None, today: date) -> list[Item]:
    rows = db.session.execute(
        _follow_up_select(organization_id, user_id, today)
        .order_by(FollowUp.next_on, FollowUp.case_id)
        .limit(LIMIT)
    ).all()
    return [Item("follow_up", case_id, next_on) for case_id, next_on in rows if next_on]


def _new_sms_where(organization_id: int) -> tuple[Any, ...]:
    """Hotline cases no caseworker has taken up yet (danger reports are listed as such)."""
    return (
        Case.organization_id == organization_id,
        Case.status == "open",
        Case.channel == "sms",
        Case.profile_completed_at.is_(None),
        ~danger.pending_clause(),
    )


def _danger_where(organization_id: int) -> tuple[Any, ...]:
    """The same cases as ``danger.pending_cases``."""
    return (Case.organization_id == organization_id, Case.status == "open",
            danger.pending_clause())


def _unassigned_where(organization_id: int) -> tuple[Any, ...]:
    return (Case.organization_id == organization_id, Case.status == "open",
            Case.assigned_to_id.is_(None), ~Case.is_draft)


def _drafts_where(organization_id: int) -> tuple[Any, ...]:
    return (Case.organization_id == organization_id, Case.is_draft)


def _new_sms_items(organization_id: int) -> list[Item]:
    rows = db.session.execute(
        select(Case.id, Case.created_at)
        .where(*_new_sms_where(organization_id))
        .order_by(Case.created_at, Case.id)
        .limit(LIMIT)
    ).all()
    return [Item("new_sms", case_id, created_at) for case_id, created_at in rows]


def _sort_key(item: Item) -> tuple[int, str, int]:
    since = item.since.isoformat()
    return (KINDS.index(item.kind), since, item.case_id)


def _fill(items: Iterable[Item], cases: Mapping[int, Case]) -> None:
    for item in items:
        case = cases[item.case_id]
        item.reference = case.reference
        item.alias = case.alias


def build(
    organization_id: int,
    *,
    user_id: int | None,
    now: datetime,
    thresholds: Thresholds,
    danger_cases: Iterable[Case] = (),
    supervisor: bool = False,
) -> Queue:
    """The queue of ``user_id`` (a caseworker: her cases), or of the whole organization
    (``user_id`` None: a supervisor). ``danger_cases``: the danger reports the page already
    loaded (``app.danger.pending_cases``), listed first."""
    items = [Item("danger", c.id, c.danger_reported_at or now) for c in danger_cases]
    items += _new_sms_items(organization_id)
    items += _referral_items(organization_id, user_id, now, thresholds)
    items += _follow_up_items(organization_id, user_id, now.date())
    items.sort(key=_sort_key)
    ids = {i.case_id for i in items}
    queue = Queue(items=items)
    if supervisor:
        queue.unassigned = db.session.scalar(
            select(func.count(Case.id)).where(*_unassigned_where(organization_id))
        ) or 0
        queue.load = [
            (username, count)
            for username, count in db.session.execute(
                select(User.username, func.count(Case.id))
                .join(Case, and_(Case.assigned_to_id == User.id, Case.status == "open"),
                      isouter=True)
                .where(
                    User.organization_id == organization_id,
                    User.role.in_(("caseworker", "supervisor")),
                    User.active.is_(True),
                )
                .group_by(User.id, User.username)
                .order_by(func.count(Case.id).desc(), User.username)
            ).all()
        ]
    cases = {
        c.id: c
        for c in db.session.scalars(
            select(Case).where(Case.id.in_(ids)).options(selectinload(Case.data_key))
        )
    } if ids else {}
    _fill(items, cases)
    queue.drafts = db.session.scalar(
        select(func.count(Case.id)).where(*_drafts_where(organization_id))
    ) or 0
    queue.consent_tasks = len(open_tasks(organization_id, limit=LIMIT))
    return queue


def _count_of(stmt: Select[*tuple[Any, ...]], limit: int = LIMIT) -> ScalarSelect[Any]:
    """``SELECT count(*)`` of at most ``limit`` rows of ``stmt``: the home page lists no
    more of a kind, so the navigation counts no more either."""
    return select(func.count()).select_from(stmt.limit(limit).subquery()).scalar_subquery()


def nav_count(
    organization_id: int,
    *,
    user_id: int | None,
    now: datetime,
    thresholds: Thresholds,
    supervisor: bool = False,
) -> int:
    """What the navigation shows next to Home on every staff page: ``Queue.count`` of the
    queue ``build`` would make with the same arguments, in ONE query of counts (no rows, no
    aliases, no work per case). The same clauses as ``build``: one rule, one place."""
    counts = [
        _count_of(select(Case.id).where(*_danger_where(organization_id)), danger.HOME_LIMIT),
        _count_of(select(Case.id).where(*_new_sms_where(organization_id))),
        _count_of(_referral_select(organization_id, user_id, now, thresholds)),
        _count_of(_follow_up_select(organization_id, user_id, now.date())),
        select(func.count(Case.id)).where(*_drafts_where(organization_id)).scalar_subquery(),
        _count_of(open_tasks_select(organization_id)),
    ]
    if supervisor:
        counts.append(
            select(func.count(Case.id)).where(*_unassigned_where(organization_id))
            .scalar_subquery()
        )
    row = db.session.execute(select(*counts)).one()
    return sum(int(n or 0) for n in row)
