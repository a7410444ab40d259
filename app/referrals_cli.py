"""`flask referrals ...` (registered by one line in app/cli.py)."""

from __future__ import annotations

import click

from app.extensions import db


@click.group("referrals")
def referrals_group() -> None:
    """Referrals: expiry of unanswered referrals and their bed holds."""


@referrals_group.command("expire")
def expire_command() -> None:
    """Flag pending referrals near the end of their answer window (the provider is
    reminded) and expire those past it (their beds are given back). Run every few minutes."""
    from app.referrals import expire_due

    result = expire_due()
    db.session.commit()
    click.echo(f"Flagged {result.flagged}, expired {result.expired}.")
