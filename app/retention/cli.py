"""``flask retention run [--dry-run] [--now ISO-8601] [--batch N]`` and ``flask retention
status`` (DESIGN §5, §7). Output holds rule names, counts and dates only."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime

import click

from app.core.extensions import db
from app.retention import service as retention


def _parse_now(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter("use ISO 8601, e.g. 2027-01-31T02:00:00Z") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"


def _table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())


@click.group("retention")
def retention_group() -> None:
    """Retention: erase and prune what is past its period (DESIGN §5)."""


@retention_group.command("run")
@click.option("--dry-run", is_flag=True, help="Print what is due and change nothing.")
@click.option(
    "--now",
    "now_text",
    default=None,
    metavar="ISO-8601",
    help="Apply the rules as of this moment (default: the current time).",
)
@click.option("--batch", type=int, default=None, help="Records per transaction.")
def run_command(dry_run: bool, now_text: str | None, batch: int | None) -> None:
    """Apply every retention rule. Safe to interrupt and run again; one run at a time."""
    now = _parse_now(now_text)
    try:
        report = retention.run(now, dry_run=dry_run, batch=batch)
    except retention.RetentionLocked:
        click.echo("Another retention run is in progress (lock held); nothing done.", err=True)
        sys.exit(75)  # EX_TEMPFAIL: try again later
    except retention.LockLost:
        click.echo("The retention lock was lost; stopped. Run again to finish.", err=True)
        sys.exit(75)
    head = "due (dry run)" if dry_run else "done"
    rows = [("rule", head, "oldest due")]
    rows += [(r.name, str(r.count), _when(r.oldest_due)) for r in report.results]
    click.echo(f"Retention {'dry run' if dry_run else 'run'} as of {_when(report.now)}")
    _table(rows)
    if dry_run:
        click.echo("Dry run: nothing was changed.")
    else:
        click.echo(f"Recorded as retention run #{report.run_id} in the audit trail.")


@retention_group.command("status")
@click.option("--days", type=click.IntRange(1, 366), default=7, show_default=True)
def status_command(days: int) -> None:
    """What is due now and what falls due in the next days, per rule."""
    lines = retention.status(days=days)
    rows = [("rule", "due now", f"due within {days} days", "oldest due")]
    for current, ahead in lines:
        rows.append(
            (
                current.name,
                str(current.count),
                str(ahead.count),
                _when(current.oldest_due or ahead.oldest_due),
            )
        )
    _table(rows)
    last = retention.last_run()
    if last is None:
        click.echo("No retention run has completed yet.")
    else:
        click.echo(f"Last completed run: #{last.id} at {_when(last.finished_at)}.")
    holder = retention.lock_holder()
    if holder is not None:
        click.echo(f"A run is in progress (lock held until {_when(holder.expires_at)}).")
    db.session.rollback()
