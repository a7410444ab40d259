"""`flask referrals ...` (registered by one line in app/cli.py)."""

from __future__ import annotations

import click

from app.core.extensions import db
from app.referrals.service import expire_due


@click.group("referrals")
def referrals_group() -> None:
    """Referrals: expiry of unanswered referrals and their bed holds."""


@referrals_group.command("expire")
def expire_command() -> None:
    """Flag pending referrals near the end of their answer window (the provider is
    reminded) and expire those past it (their beds are given back). Run every few minutes."""

    flagged = expired = 0
    while True:  # one batch per transaction, until nothing is due
        result = expire_due(batch=BATCH)
        db.session.commit()
        flagged, expired = flagged + result.flagged, expired + result.expired
        if result.flagged < BATCH and result.expired < BATCH:
            break
    click.echo(f"Flagged {flagged}, expired {expired}.")


BATCH = 500
