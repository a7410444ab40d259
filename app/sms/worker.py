"""The outbox worker behind ``flask sms worker [--once]`` (DESIGN §4, §6).

One pass:

1. **Claim** due rows in a short transaction: ``status = 'queued'``, ``next_attempt_at <=
   now`` and no live lease. On PostgreSQL the SELECT uses ``FOR UPDATE SKIP LOCKED``, so
   several workers never claim the same row; on SQLite every transaction starts with
   ``BEGIN IMMEDIATE`` (``app.database``), which serialises claims. Claiming sets
   ``lease_owner`` / ``lease_expires_at`` (``SMS_LEASE_SECONDS``) and counts the attempt.
2. **Prepare** each message in its own short transaction: check the row is still ours,
   check consent *now* (``permits(case, "sms")`` for survivor messages: withdrawn or expired
   consent, an erased case, safe hours waiting to be checked or an opted-out number cancel
   the message instead of sending it), check that what it announces is still true (a
   message about a referral: the referral's status, ``messaging.announcement_holds``;
   otherwise cancelled), check that it is inside her safe hours on her clock now (they may
   have changed since it was queued; otherwise it waits for the next safe time, without
   counting a try), read the number (case / service / sealed recipient) and render the
   body in memory.
   The transaction is committed before the network call: no database lock is held while
   Twilio answers (on SQLite that would block every web request).
3. **Send** through the backend, at most ``SMS_RATE_PER_SECOND`` messages per second per
   worker process (a token bucket; with N workers the sender sees at most N times that).
   *After* the rate limiter's wait, the lease must still cover a whole HTTP timeout
   (``SMS_HTTP_TIMEOUT_SECONDS``); otherwise the message is not sent but given back: lease
   released and its attempt returned (a skip is not a try). A pass that only skipped
   sleeps like an idle one instead of claiming the same rows again at once.
4. **Record** the outcome right after the API call: the Twilio SID and status, the sealed
   number cleared, the lease released. Errors: 21610 records a ``contact_sms`` withdrawal
   and an opt-out for the number; invalid-number errors fail for good; 5xx / 429 / network
   errors go back to the queue with exponential backoff (``SMS_BACKOFF_BASE_SECONDS`` *
   2^(attempt-1), capped at ``SMS_BACKOFF_CAP_SECONDS``, with jitter) until
   ``SMS_MAX_ATTEMPTS`` tries, then fail.
5. **Delete at Twilio** (``TWILIO_DELETE_AFTER_DELIVERY``): messages that reached a final
   status (delivery callback) and inbound messages already parsed are deleted at Twilio, so
   Twilio does not keep the texts either.

Crashes and duplicates. A crash after the claim but before the API call loses nothing: the
lease expires and any worker reclaims the row. A duplicate send needs a crash (or a lost
database connection) *after* Twilio accepted the message and *before* step 4 committed —
a window of one database round trip. Then the row is resent once its lease expires: at most
one duplicate per crash per message, and never more than ``SMS_MAX_ATTEMPTS`` sends in all.
The HTTP timeout (``SMS_HTTP_TIMEOUT_SECONDS``) is kept below the lease (``config.py`` refuses
a lease not longer than the timeout plus one send interval), and a message whose lease would
run out during the call is not sent, so two live workers never send the same row at once.
Twilio's Messages API has no idempotency key, so this is the bound.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import Flask
from sqlalchemy import or_, select, update

from app.cases.service import request_checkpoint
from app.consent import safe_hours
from app.consent.service import permits
from app.core.crypto import CryptoError, KeyDestroyed
from app.core.extensions import db
from app.models.base import utcnow
from app.models.cases import Case
from app.models.directory import Service
from app.models.messages import FINAL_STATUSES, Message
from app.sms import messaging, whatsapp
from app.sms import status as sms_status

log = logging.getLogger("haven.sms")


@dataclass
class PassResult:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    cancelled: int = 0
    deferred: int = 0
    skipped: int = 0
    deleted_remote: int = 0
    outcomes: dict[int, str] = field(default_factory=dict)


@dataclass
class Prepared:
    message_id: int
    to: str
    body: str
    template_key: str
    lease_expires_at: datetime
    # WhatsApp (app.whatsapp): the channel, and outside the 24-hour window the approved
    # template to send instead of the body.
    extra: dict[str, Any] = field(default_factory=dict)


class RateLimiter:
    """At most ``rate`` calls per second (token bucket of size 1)."""

    def __init__(
        self, rate: float, clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / rate
        self.clock = clock
        self.sleep = sleep
        self.next_slot = 0.0

    def wait(self) -> None:
        now = self.clock()
        if self.next_slot > now:
            self.sleep(self.next_slot - now)
            now = self.next_slot
        self.next_slot = now + self.interval


def backoff_seconds(
    attempt: int, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Exponential backoff with a cap and +-20 % jitter (so retries of many messages that
    failed together spread out)."""
    raw = min(cap, base * (2 ** max(0, attempt - 1)))
    jitter = (rng or random).uniform(0.8, 1.2)
    return float(min(cap, raw * jitter))


class Worker:
    def __init__(
        self,
        app: Flask,
        owner: str | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.app = app
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"[:64]
        cfg = app.config
        self.lease = timedelta(seconds=cfg["SMS_LEASE_SECONDS"])
        self.max_attempts = cfg["SMS_MAX_ATTEMPTS"]
        self.base = cfg["SMS_BACKOFF_BASE_SECONDS"]
        self.cap = cfg["SMS_BACKOFF_CAP_SECONDS"]
        self.timeout = timedelta(seconds=cfg["SMS_HTTP_TIMEOUT_SECONDS"])
        self.limiter = RateLimiter(cfg["SMS_RATE_PER_SECOND"], clock, sleep)
        self.sleep = sleep
        self.now = now
        # Claim no more than can be sent well within one lease at the configured rate.
        per_lease = cfg["SMS_RATE_PER_SECOND"] * max(1.0, cfg["SMS_LEASE_SECONDS"] / 2)
        self.batch = max(1, min(100, int(per_lease)))

    # -- loop ---------------------------------------------------------------------------

    def run(self, *, once: bool = False, idle_seconds: float = 2.0,
            should_stop: Callable[[], bool] = lambda: False) -> PassResult:
        total = PassResult()
        while not should_stop():
            result = self.run_pass()
            for name in ("claimed", "sent", "retried", "failed", "cancelled", "deferred",
                         "skipped", "deleted_remote"):
                setattr(total, name, getattr(total, name) + getattr(result, name))
            total.outcomes.update(result.outcomes)
            # A pass whose every claim was skipped (lease too short, rows taken by another
            # worker) did nothing: claiming again at once would spin on the same rows.
            only_skipped = result.claimed == result.skipped
            if once:
                if only_skipped:
                    break
                continue
            if only_skipped and result.deleted_remote == 0:
                self.sleep(idle_seconds)
        return total

    def run_pass(self) -> PassResult:
        result = PassResult()
        ids = self.claim()
        result.claimed = len(ids)
        for message_id in ids:
            outcome = self.process(message_id)
            result.outcomes[message_id] = outcome
            attr = {"sent": "sent", "retry": "retried", "failed": "failed",
                    "cancelled": "cancelled", "deferred": "deferred"}.get(outcome, "skipped")
            setattr(result, attr, getattr(result, attr) + 1)
        result.deleted_remote = self.delete_remote()
        return result

    # -- 1. claim -----------------------------------------------------------------------

    def claim(self) -> list[int]:
        now = self.now()
        query = (
            select(Message.id)
            .where(
                Message.direction == "out",
                Message.status == "queued",
                Message.next_attempt_at <= now,
                or_(Message.lease_expires_at.is_(None), Message.lease_expires_at <= now),
            )
            .order_by(Message.next_attempt_at, Message.id)
            .limit(self.batch)
        )
        if db.session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        try:
            ids = list(db.session.scalars(query))
            if ids:
                db.session.execute(
                    update(Message)
                    .where(Message.id.in_(ids))
                    .values(
                        lease_owner=self.owner,
                        lease_expires_at=now + self.lease,
                        attempts=Message.attempts + 1,
                        updated_at=now,
                    )
                    .execution_options(synchronize_session=False)
                )
            db.session.commit()
        except Exception:
            db.session.rollback()
            raise
        return ids

    # -- 2-4. prepare, send, record -----------------------------------------------------

    def process(self, message_id: int) -> str:
        try:
            prepared = self.prepare(message_id)
        except Exception as exc:  # noqa: BLE001 - one bad row must not stop the worker
            db.session.rollback()
            log.error("sms: preparing message #%s failed (%s)", message_id, type(exc).__name__)
            return self.finish_error(message_id, messaging.SendError("permanent"))
        if isinstance(prepared, str):
            return prepared
        self.limiter.wait()
        # The lease is checked after the wait: only now is it known how much of it is left
        # for the call (a wait in a long batch, or a paused process, can use most of it).
        if self.now() + self.timeout > prepared.lease_expires_at:
            prepared.body = ""
            prepared.to = ""
            return self.give_back(message_id)
        try:
            result = messaging.backend(self.app).send(
                prepared.to, prepared.body, prepared.template_key, **prepared.extra
            )
        except messaging.SendError as err:
            return self.finish_error(message_id, err)
        except Exception as exc:  # noqa: BLE001
            return self.finish_error(message_id, messaging.classify(exc))
        finally:
            prepared.body = ""
            prepared.to = ""
        return self.finish_sent(message_id, result)

    def _own(self, message_id: int) -> Message | None:
        message = db.session.get(Message, message_id, populate_existing=True)
        if message is None or message.status != "queued" or message.lease_owner != self.owner:
            return None
        return message

    def prepare(self, message_id: int) -> Prepared | str:
        now = self.now()
        message = self._own(message_id)
        if message is None or message.lease_expires_at is None:
            db.session.commit()
            return "skipped"
        if messaging.is_opted_out(message.counterpart_index):
            return self.cancel(message, now)
        explicit = False
        to: str | None
        if message.audience == "survivor":
            case = db.session.get(Case, message.case_id) if message.case_id else None
            if case is None or not permits(case, "sms"):
                return self.cancel(message, now)
            if not messaging.announcement_holds(message):
                return self.cancel(message, now)
            try:
                when = safe_hours.send_time(
                    case, now, self.app.config["HAVEN_DEFAULT_TIMEZONE"]
                )
                to = case.phone
            except (KeyDestroyed, CryptoError):
                return self.cancel(message, now)
            if when is None:
                return self.cancel(message, now)
            if when > now:
                return self.defer(message, when)
            explicit = permits(case, "sms_explicit")
            if to is None:
                return self.cancel(message, now)
        elif message.service_id is not None:
            service = db.session.get(Service, message.service_id)
            to = service.intake_phone if service is not None and service.active else None
            if to is None:
                return self.cancel(message, now)
        else:
            to = message.recipient
            if to is None:
                return self.fail(message, now, None)
        extra: dict[str, Any] = {}
        if message.channel == "whatsapp":
            plan = whatsapp.plan(message, now, self.app.config["TWILIO_WHATSAPP_CONTENT_SIDS"])
            if plan.reason is not None:
                message.failure_reason = plan.reason
                return self.fail(message, now, None)
            extra = {"channel": "whatsapp", "content_sid": plan.content_sid,
                     "content_variables": plan.content_variables}
        body = messaging.render(
            message.template_key or "", message.language, message.params, explicit=explicit
        )
        prepared = Prepared(
            message.id, to, body, message.template_key or "", message.lease_expires_at, extra
        )
        db.session.commit()
        return prepared

    @staticmethod
    def clear_recipient(message: Message) -> None:
        """The sealed number is not needed any more; its bytes must not linger in the WAL."""
        if message.recipient is not None:
            message.recipient = None
            request_checkpoint()

    def give_back(self, message_id: int) -> str:
        """Not sent for want of lease: release the row for the next pass (of any worker) and
        return the attempt the claim counted, so skips never use up SMS_MAX_ATTEMPTS."""
        db.session.execute(
            update(Message)
            .where(
                Message.id == message_id,
                Message.lease_owner == self.owner,
                Message.status == "queued",
            )
            .values(
                lease_owner=None,
                lease_expires_at=None,
                attempts=Message.attempts - 1,
                updated_at=self.now(),
            )
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
        return "skipped"

    def cancel(self, message: Message, now: datetime) -> str:
        message.status = "cancelled"
        message.final_at = now
        self.clear_recipient(message)
        message.lease_owner = None
        message.lease_expires_at = None
        messaging.audit_send(message, "sms.cancel")
        db.session.commit()
        return "cancelled"

    def defer(self, message: Message, when: datetime) -> str:
        """Outside her safe hours now: back to the queue until ``when``; the claim's count
        of this try is given back (it was not a try)."""
        message.next_attempt_at = when
        message.attempts = max(0, message.attempts - 1)
        message.lease_owner = None
        message.lease_expires_at = None
        db.session.commit()
        return "deferred"

    def fail(self, message: Message, now: datetime, code: int | None) -> str:
        message.status = "failed"
        message.error_code = code
        message.final_at = now
        self.clear_recipient(message)
        message.lease_owner = None
        message.lease_expires_at = None
        db.session.commit()
        return "failed"

    def finish_sent(self, message_id: int, result: messaging.SendResult) -> str:
        now = self.now()
        message = db.session.get(Message, message_id, populate_existing=True)
        if message is None:
            db.session.commit()
            return "skipped"
        # Even if our lease ran out meanwhile, Twilio accepted it: record that, so no one
        # sends it again.
        message.twilio_sid = result.sid
        message.status = result.status
        message.sent_at = now
        message.error_code = None
        self.clear_recipient(message)
        message.lease_owner = None
        message.lease_expires_at = None
        if result.status in FINAL_STATUSES:
            message.final_at = now
        messaging.audit_send(message, "sms.send")
        db.session.commit()
        return "sent"

    def finish_error(self, message_id: int, err: messaging.SendError) -> str:
        now = self.now()
        message = db.session.get(Message, message_id, populate_existing=True)
        if message is None or message.status != "queued":
            db.session.commit()
            return "skipped"
        if err.kind == "opted_out":
            sms_status.record_opted_out(message)
            return self.fail(message, now, err.code)
        if err.kind == "permanent" or message.attempts >= self.max_attempts:
            if err.kind != "permanent":
                log.warning("sms: message #%s failed after %s tries", message.id, message.attempts)
            return self.fail(message, now, err.code)
        message.error_code = err.code
        message.next_attempt_at = now + timedelta(
            seconds=backoff_seconds(message.attempts, self.base, self.cap)
        )
        message.lease_owner = None
        message.lease_expires_at = None
        db.session.commit()
        return "retry"

    # -- 5. delete at Twilio ------------------------------------------------------------

    def delete_remote(self, limit: int = 50) -> int:
        if not self.app.config["TWILIO_DELETE_AFTER_DELIVERY"]:
            return 0
        if messaging.backend(self.app).name != "twilio":
            return 0  # nothing of ours is kept at Twilio
        rows = db.session.execute(
            select(Message.id, Message.twilio_sid, Message.channel)
            .where(
                Message.twilio_sid.is_not(None),
                Message.final_at.is_not(None),
                Message.remote_deleted_at.is_(None),
                Message.remote_delete_attempts < self.max_attempts,
            )
            .order_by(Message.final_at)
            .limit(limit)
        ).all()
        db.session.commit()
        done = 0
        backend = messaging.backend(self.app)
        for message_id, sid, channel in rows:
            ok = False
            try:
                ok = backend.delete(sid or "", channel)
            except messaging.SendError:
                ok = False
            except Exception as exc:  # noqa: BLE001
                log.warning("sms: deleting message #%s at Twilio failed (%s)", message_id,
                            type(exc).__name__)
            values: dict[str, Any] = (
                {"remote_deleted_at": self.now()} if ok
                else {"remote_delete_attempts": Message.remote_delete_attempts + 1}
            )
            db.session.execute(update(Message).where(Message.id == message_id).values(**values))
            db.session.commit()
            done += int(ok)
        return done
