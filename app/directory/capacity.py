"""Bed capacity: the one rule for a shelter's bed counts (DESIGN §6, "one rule, one place").

A shelter whose capacity is tracked has ``beds_total`` and ``beds_available`` — the beds
free for NEW referrals. Beds held for open referrals (``Referral.hold_status == "held"``)
are counted apart, on the referrals. The rule, for every count a person writes:

    0 <= free,    held <= total,    free + held <= total

``check`` is the rule; ``set_beds`` is the only function that writes a count someone typed or
texted, and it checks under the lock. Every path calls it and maps ``BedCountError`` to its
own words: the provider portal and the directory's beds form (a field error), SMS ``BEDS``
("send BEDS and a number from 0 to N", N = total - held), the service form (new and edit).
The HSDS import writes a feed's HSDS 3.1 bed capacity through ``set_beds`` too, and reports a
count the holds contradict (``app.hsds``). A hold moves one bed from free to
held and back (``app.referrals``: ``take_bed``, a returned hold), which keeps the sum.

Both bed counts are kept, or neither (the shelter's capacity is not tracked and referrals
hold nothing). Only shelters keep a count.

Lock order (``app.referrals``): the audit chain's lock first, then the service row. Taking,
returning and counting holds all happen after that same lock, so the number of holds cannot
change between the check and the write. Flushes and audits; never commits.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select, update

from app.core import audit
from app.core.extensions import db
from app.models.base import utcnow
from app.models.directory import Service
from app.models.referrals import Referral


class _Keep(Enum):
    KEEP = "keep"


KEEP = _Keep.KEEP  # set_beds: leave this count as it is


class BedCountError(ValueError):
    """A bed count the rule refuses. ``reason`` is a stable code, ``field`` the count at
    fault ("total" or "free"), ``message`` translated for a form, ``top`` the most beds that
    may be free now (total - held; None when no total is kept)."""

    def __init__(
        self,
        reason: str,
        message: Any,
        *,
        field: str,
        held: int,
        total: int | None,
    ) -> None:
        self.reason = reason
        self.message = message
        self.field = field
        self.held = held
        self.total = total
        self.top = max(0, total - held) if total is not None else None
        super().__init__(reason)


def beds_held(service_id: int | None) -> int:
    """Beds held for open referrals of this service."""
    if service_id is None:
        return 0
    return int(
        db.session.scalar(
            select(func.count(Referral.id)).where(
                Referral.service_id == service_id, Referral.hold_status == "held"
            )
        )
        or 0
    )


def most_free(service: Service) -> int | None:
    """The most beds that may be free for new referrals now (None: no count is kept)."""
    if service.beds_total is None:
        return None
    return max(0, service.beds_total - beds_held(service.id))


def check(category: str, total: int | None, free: int | None, held: int) -> None:
    """The rule. Raises ``BedCountError``; writes nothing."""

    def refuse(reason: str, message: Any, field: str) -> BedCountError:
        return BedCountError(reason, message, field=field, held=held, total=total)

    if total is None and free is None:
        return  # capacity not tracked
    if category != "shelter":
        raise refuse("not_shelter", _l("Only shelters keep a bed count."), "total")
    if total is None:
        raise refuse(
            "no_total", _l("Give the beds in total as well as the beds free now."), "total"
        )
    if free is None:
        raise refuse("no_free", _l("Give the beds free now as well as the beds in total."), "free")
    if total < 0 or free < 0:
        raise refuse(
            "negative",
            _l("A number of beds cannot be negative."),
            "total" if total < 0 else "free",
        )
    if total < held:
        raise refuse(
            "below_held",
            _l(
                "The beds in total cannot be fewer than the %(held)s beds held for referrals.",
                held=held,
            ),
            "total",
        )
    if free + held > total:
        raise refuse(
            "over_total",
            _l(
                "No more than %(top)s beds can be free now: beds free plus the %(held)s held "
                "for referrals cannot be more than the %(total)s beds in total.",
                top=total - held,
                held=held,
                total=total,
            ),
            "free",
        )


def set_beds(
    service: Service,
    *,
    total: int | _Keep | None = KEEP,
    free: int | _Keep | None = KEEP,
    actor_org_id: int | None = None,
) -> bool:
    """Set a service's bed counts (``KEEP``: as it is; None: not tracked) under the rule,
    for its category as set in this session. Returns whether a count changed (then audited
    ``service.beds_update``). Raises ``BedCountError`` before writing a count; the caller
    rolls its transaction back."""
    audit.lock()  # first: the lock order of app.referrals (holds change under it)
    if service.id is None:  # a new service (the service form): its row first
        db.session.add(service)
        db.session.flush()
    # The counts as they are now (a hold may have been taken since this session read the
    # row), and the holds, both after the lock.
    now_total, now_free = db.session.execute(
        select(Service.beds_total, Service.beds_available).where(Service.id == service.id)
    ).one()
    held = beds_held(service.id)
    new_total = now_total if total is KEEP else total
    new_free = now_free if free is KEEP else free
    check(service.category, new_total, new_free, held)
    if (new_total, new_free) == (now_total, now_free):
        return False
    db.session.execute(
        update(Service)
        .where(Service.id == service.id)
        .values(beds_total=new_total, beds_available=new_free, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    db.session.expire(service, ["beds_total", "beds_available", "updated_at"])
    audit.record("service.beds_update", "service", service.id, actor_org_id=actor_org_id)
    return True
