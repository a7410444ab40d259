"""`flask sms worker [--once]` (DESIGN §7): sends the outbox (see app/sms/worker.py)."""

from __future__ import annotations

import signal
from types import FrameType

import click
from flask import current_app

from app.sms.worker import Worker


@click.group("sms")
def sms_group() -> None:
    """SMS outbox."""


@sms_group.command("worker")
@click.option("--once", is_flag=True, help="Send what is due now, then exit.")
@click.option("--idle", type=float, default=2.0, show_default=True,
              help="Seconds to wait when nothing is due.")
def worker_command(once: bool, idle: float) -> None:
    """Send due messages with retries and backoff; several workers may run at once."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    stopping = {"now": False}

    def stop(_signum: int, _frame: FrameType | None) -> None:
        stopping["now"] = True

    if not once:
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
    worker = Worker(app)
    result = worker.run(once=once, idle_seconds=idle, should_stop=lambda: stopping["now"])
    click.echo(
        f"sms worker: {result.sent} sent, {result.retried} to retry, {result.failed} failed, "
        f"{result.cancelled} cancelled, {result.deferred} waiting for safe hours, "
        f"{result.deleted_remote} deleted at Twilio."
    )
