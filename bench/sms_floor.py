"""The floor of the SMS webhook benchmark (DESIGN §8): Haven's whole request cycle for
``POST /sms/inbound`` — gate, signature, form and phone checks, the SQLite writers' queue,
commit, TwiML, headers — with the hotline replaced by the least work any correct webhook
must do:

  "row":  one durable raw row per message: the MessageSid row that makes a Twilio retry
          harmless, written with the raw DBAPI (no ORM, no SQLAlchemy Core) and committed;
  "noop": nothing at all (a reference printed with ``--noop``, not a budget).

Served by gunicorn as ``sms_floor:app`` with ``HAVEN_BENCH_FLOOR=row|noop``, this folder on
PYTHONPATH after the tree under test, so it wraps that tree's app. It imports nothing from
the ``bench`` package (the tree under test may have its own) and finds the webhook's hotline
call through the view itself: the view function registered for the endpoint ``sms.inbound``
(a stable name) calls ``handle_inbound`` either as a name of its module or as an attribute of
a module it imported (``hotline.handle_inbound``); that one reference is replaced.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib
import inspect
import os
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

FLOOR_ROW_SQL = (
    "INSERT INTO sms_message (direction, audience, status, twilio_sid, counterpart_index, "
    "final_at, created_at, updated_at, attempts, params, language, remote_delete_attempts) "
    "VALUES ('in', 'survivor', 'received', ?, ?, ?, ?, ?, 0, '{}', 'en', 0) "
    "ON CONFLICT (twilio_sid) DO NOTHING"
)


def blind_index(e164: str) -> str:
    """The phone blind index of DESIGN §7 (HMAC-SHA256, key HAVEN_INDEX_KEY)."""
    key = base64.urlsafe_b64decode(os.environ["HAVEN_INDEX_KEY"])
    return hmac.new(key, e164.encode(), hashlib.sha256).hexdigest()


def write_row(sid: str, e164: str, text: str, at: Any = None, **_channel: Any) -> list[str]:  # noqa: ARG001 - the row-writer signature
    try:
        db = importlib.import_module("app.core.extensions").db
    except ModuleNotFoundError:  # a tree from before the feature packages (--compare REV)
        db = importlib.import_module("app.extensions").db
    when = at or datetime.now(UTC)
    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        if db.engine.dialect.name == "postgresql":
            cursor.execute(FLOOR_ROW_SQL.replace("?", "%s"),
                           (sid, blind_index(e164), when, when, when))
            raw.commit()
        else:  # pysqlite runs in autocommit here; Haven begins IMMEDIATE
            stamp = when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
            cursor.execute("BEGIN IMMEDIATE")
            cursor.execute(FLOOR_ROW_SQL, (sid, blind_index(e164), stamp, stamp, stamp))
            cursor.execute("COMMIT")
    finally:
        raw.close()
    return []


def nothing(sid: str, e164: str, text: str, at: Any = None, **_channel: Any) -> list[str]:  # noqa: ARG001 - the row-writer signature
    return []


def replace_hotline(flask_app: Any, handler: Any) -> str:
    """Point the ``sms.inbound`` view's call of ``handle_inbound`` at ``handler``; returns
    where it was found. Raises LookupError when the view calls no ``handle_inbound``."""
    view = inspect.unwrap(flask_app.view_functions["sms.inbound"])
    names = view.__globals__
    if callable(names.get("handle_inbound")):
        names["handle_inbound"] = handler
        return f"{view.__module__}.handle_inbound"
    for value in list(names.values()):
        if isinstance(value, ModuleType) and callable(getattr(value, "handle_inbound", None)):
            value.handle_inbound = handler  # type: ignore[attr-defined]
            return f"{value.__name__}.handle_inbound"
    raise LookupError(f"{view.__module__}: the sms.inbound view calls no handle_inbound")


def build(mode: str) -> Any:
    create_app = importlib.import_module("app").create_app
    flask_app = create_app()
    replace_hotline(flask_app, write_row if mode == "row" else nothing)
    return flask_app


app = build(os.environ["HAVEN_BENCH_FLOOR"]) if os.environ.get("HAVEN_BENCH_FLOOR") else None
