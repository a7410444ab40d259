"""Soak test (DESIGN §8, ``make soak``): many instances of Haven on one PostgreSQL database.

Several gunicorn instances (``app/gunicorn.conf.py``, 2 workers each) and several
``flask sms worker`` processes run against one scratch PostgreSQL database, driven for a
bounded time by concurrent traffic through the web and SMS paths only:

  * survivors: hotline conversations from many numbers (language, consent, needs, area),
    follow-ups, HELP, STOP / START (``contact_sms`` withdrawn and given again) and FORGET
    (the case erased); some messages are resent with the same MessageSid to another
    instance, as Twilio retries;
  * caseworkers (signed in through the web): consent to share with shelters recorded and
    withdrawn, referrals to shelters with few beds (preview, release, send);
  * providers, by SMS from their shelters' registered intake phones: BEDS n, ACCEPT and
    DECLINE of pending referrals.

Meanwhile every shelter's bed counts are sampled (one statement each time: a consistent
snapshot). Then the outbox is drained, every process is stopped, and the soak checks:

  * no 5xx: no answer of 500 or more, no connection error, in what the clients saw and in
    the servers' access logs;
  * every message sent once: each send made by the workers (a counting SMS backend records
    the SID it returns) is the SID on exactly one outbound message, and every message marked
    sent carries one of them; nothing due is left unsent;
  * no overbooked bed: at every sample, no shelter with beds_available < 0 or free + held
    > total (held: referrals whose bed hold is ``held``);
  * the audit chain intact: ``flask audit verify`` exits 0.

    .venv/bin/python -m bench.soak [--seconds 60] [--instances 3] [--web-workers 2]
        [--sms-workers 2] [--survivors 6] [--caseworkers 2] [--providers 2]
        [--shelters 4] [--beds 2] [--seed N] [--keep-logs DIR]

Exits 1 when a check fails. Traffic goes to 127.0.0.1 only; the database (on
HAVEN_BENCH_PG_URL, default postgresql+psycopg://postgres@127.0.0.1:5432/postgres) is dropped
at the end. The SMS workers are ``flask sms worker`` itself, run in a process whose app has
the counting backend in place of the console one (``--sms-worker`` below).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, NamedTuple
from urllib.parse import urlencode

import requests
from sqlalchemy import create_engine, text
from twilio.request_validator import RequestValidator

from bench import common

TOKEN = "soak-" + secrets.token_hex(16)
ACCOUNT_SID = "AC" + "0" * 32
HOTLINE_ORG = "Soak Hotline NGO"
SURVIVOR_PREFIX = "+1415555"
SHELTER_PREFIX = "+1415666"
ALWAYS = [[d, "00:00", "24:00"] for d in range(7)]
SENT_STATUSES = ("submitted", "sent", "delivered", "undelivered", "read")
REFUSAL = re.compile(r'class="flash flash-error" role="alert">([^<]{0,60})')
ACCESS_STATUS = re.compile(r'^\S+ "[A-Z]+ [^"]*" (\d{3}) ')


# --- the SMS workers: `flask sms worker` with a counting backend -----------------------------


class SendResult(NamedTuple):
    sid: str
    status: str


class CountingBackend:
    """Sends nothing; appends the SID it hands back (and the template key) to a file, one
    line per send, so the soak can count sends per message. No number, no text."""

    name = "console"

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def send(self, to_e164: str, body: str, template_key: str) -> SendResult:  # noqa: ARG002 - backend interface
        sid = "SM" + secrets.token_hex(16)
        os.write(self.fd, f"{sid} {template_key}\n".encode())
        return SendResult(sid, "delivered")

    def delete(self, sid: str) -> bool:  # noqa: ARG002 - the SMS backend interface
        return True


def sms_worker(log_path: str) -> int:
    """`flask sms worker` (the CLI command itself) in an app whose SMS backend counts."""
    create_app = common.find("app:create_app")
    script_info = common.find("flask.cli:ScriptInfo")
    app = create_app()
    app.extensions["haven_sms_backend"] = CountingBackend(log_path)
    with app.app_context():
        app.cli.main(args=["sms", "worker", "--idle", "0.5"],
                     obj=script_info(create_app=lambda: app), standalone_mode=False)
    return 0


# --- what the clients saw ---------------------------------------------------------------------


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    answers: Counter[tuple[str, int]] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    driver_errors: list[str] = field(default_factory=list)  # the soak's own threads

    def guarded(self, target: Callable[..., None]) -> Callable[..., None]:
        """``target``, with any exception it raises kept (the run is then broken, not
        silently lighter)."""

        def run(*args: Any) -> None:
            try:
                target(*args)
            except Exception as exc:  # noqa: BLE001 - reported as a broken run
                with self.lock:
                    self.driver_errors.append(f"{target.__name__}: {type(exc).__name__}: {exc}")

        return run

    def answer(self, kind: str, status: int) -> None:
        with self.lock:
            self.answers[(kind, status)] += 1

    def failure(self, what: str) -> None:
        with self.lock:
            self.failures[what] += 1

    def event(self, name: str) -> None:
        with self.lock:
            self.events[name] += 1

    def count(self, predicate: Callable[[str, int], bool]) -> int:
        with self.lock:
            return sum(n for (kind, status), n in self.answers.items() if predicate(kind, status))


class HiddenInputs(HTMLParser):
    """The hidden inputs of a page (CSRF token, form tokens), by name; repeated names keep
    every value."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, list[str]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "input" and found.get("type") == "hidden" and found.get("name"):
            self.values.setdefault(found["name"] or "", []).append(found.get("value") or "")


def hidden_inputs(html: str) -> dict[str, list[str]]:
    parser = HiddenInputs()
    parser.feed(html)
    return parser.values


class Cluster:
    """The running instances: a random one per request."""

    def __init__(self, ports: list[int], tally: Tally, rng: random.Random) -> None:
        self.ports = ports
        self.tally = tally
        self.rng = rng
        self.validator = RequestValidator(TOKEN)
        self.lock = threading.Lock()

    def port(self, other_than: int | None = None) -> int:
        with self.lock:
            choices = [p for p in self.ports if p != other_than] or self.ports
            return self.rng.choice(choices)

    def sms(self, sender: str, body: str, *, sid: str | None = None,
            port: int | None = None) -> tuple[str, int]:
        """One signed inbound SMS to an instance; returns (MessageSid, port)."""
        port = port or self.port()
        params = {
            "MessageSid": sid or "SM" + secrets.token_hex(16),
            "AccountSid": ACCOUNT_SID,
            "From": sender,
            "To": "+15005550006",
            "Body": body,
            "NumMedia": "0",
        }
        url = f"http://127.0.0.1:{port}/sms/inbound"
        try:
            answer = requests.post(url, data=urlencode(params), timeout=30, headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": self.validator.compute_signature(url, params),
            })
            self.tally.answer("sms", answer.status_code)
        except requests.RequestException as exc:
            self.tally.failure(f"sms: {type(exc).__name__}")
        return params["MessageSid"], port


# --- the actors ---------------------------------------------------------------------------------


def survivor(cluster: Cluster, tally: Tally, first: int, count: int, deadline: float,
             seed: int) -> None:
    """Numbers first..first+count-1, each going through a conversation and then texting
    again; every conversation is in English."""
    rng = random.Random(seed)
    steps: dict[int, int] = {}
    opening = ["hi", "1", "yes", None, "1"]
    later = ["any news?", "any news?", "HELP", "thank you", "STOP", "START", "FORGET"]
    while time.monotonic() < deadline:
        active = [n for n in steps if steps[n] < 40]
        number = (rng.choice(active) if active and rng.random() < 0.8
                  else first + rng.randrange(count))
        step = steps.get(number, 0)
        if step < len(opening):
            body = opening[step] or rng.choice(["1", "1 2", "1 3", "1 4"])
        else:
            body = rng.choice(later)
        sid, port = cluster.sms(f"{SURVIVOR_PREFIX}{number:04d}", body)
        if rng.random() < 0.05:  # Twilio retrying the same message on another instance
            cluster.sms(f"{SURVIVOR_PREFIX}{number:04d}", body, sid=sid,
                        port=cluster.port(other_than=port))
            tally.event("retried messages")
        tally.event("survivor messages")
        if body == "FORGET":
            tally.event("FORGET (case erased)")
            steps[number] = 0
        else:
            steps[number] = step + 1
            if body == "STOP":
                tally.event("STOP (contact_sms withdrawn)")
        time.sleep(rng.uniform(0, 0.05))


def provider(cluster: Cluster, tally: Tally, engine: Any, shelters: list[dict[str, Any]],
             deadline: float, seed: int) -> None:
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        shelter = rng.choice(shelters)
        if rng.random() < 0.3:
            beds = rng.randint(1, shelter["total"]) if rng.random() < 0.8 else 0
            cluster.sms(shelter["phone"], f"BEDS {beds}")
            tally.event("provider BEDS")
        else:
            with engine.connect() as conn:
                codes = list(conn.execute(
                    text("SELECT code FROM referral WHERE service_id = :sid "
                         "AND status = 'pending'"), {"sid": shelter["id"]}).scalars())
            if codes:
                code = rng.choice(codes)
                if rng.random() < 0.6:
                    cluster.sms(shelter["phone"], f"ACCEPT {code}")
                    tally.event("provider ACCEPT")
                else:
                    cluster.sms(shelter["phone"], f"DECLINE {code} full")
                    tally.event("provider DECLINE")
        time.sleep(rng.uniform(0.05, 0.3))


class Caseworker:
    """A caseworker of the hotline's NGO on the web: signs in once, then records consent to
    share with shelters, sends referrals and withdraws consent on random hotline cases."""

    def __init__(self, cluster: Cluster, tally: Tally, engine: Any,
                 shelters: list[dict[str, Any]], username: str, password: str,
                 seed: int) -> None:
        self.cluster, self.tally, self.engine = cluster, tally, engine
        self.shelters = shelters
        self.username, self.password = username, password
        self.rng = random.Random(seed)
        self.web = requests.Session()  # the session cookie works on every instance
        self.granted: set[int] = set()  # cases this caseworker recorded share_shelter for

    def call(self, method: str, path: str, data: Any = None) -> requests.Response | None:
        url = f"http://127.0.0.1:{self.cluster.port()}{path}"
        try:
            answer = self.web.request(method, url, data=data, timeout=30,
                                      allow_redirects=False)
        except requests.RequestException as exc:
            self.tally.failure(f"web: {type(exc).__name__}")
            return None
        self.tally.answer("web", answer.status_code)
        return answer

    def sign_in(self) -> bool:
        page = self.call("GET", "/auth/login")
        if page is None:
            return False
        token = hidden_inputs(page.text).get("csrf_token", [""])[0]
        done = self.call("POST", "/auth/login", {
            "csrf_token": token, "username": self.username, "password": self.password,
            "next": "",
        })
        return done is not None and done.status_code == 302

    def consent(self, case_id: int, decision: str) -> None:
        page = self.call("GET", f"/cases/{case_id}/consent?scope=share_shelter")
        if page is None or page.status_code != 200:
            return
        hidden = hidden_inputs(page.text)
        self.call("POST", f"/cases/{case_id}/consent", {
            "csrf_token": hidden.get("csrf_token", [""])[0],
            "language": hidden.get("language", ["en"])[0],
            "text_version": hidden.get("text_version", [""])[0],
            "scope": "share_shelter", "decision": decision, "method": "verbal",
        })
        self.tally.event(f"caseworker consent {decision}")

    def refer(self, case_id: int) -> None:
        chosen = self.rng.sample(self.shelters, self.rng.choice([1, 1, 2]))
        csrf = self.csrf(case_id)
        if csrf is None:
            return
        services = [str(s["id"]) for s in chosen]
        preview = self.call("POST", f"/referrals/cases/{case_id}/preview",
                            {"csrf_token": csrf, "services": services})
        if preview is None or preview.status_code != 200:
            return
        hidden = hidden_inputs(preview.text)
        form: dict[str, Any] = {
            "csrf_token": hidden.get("csrf_token", [csrf])[0],
            "token": hidden.get("token", [""])[0],
            "services": hidden.get("services", services),
        }
        for organization_id in {s["organization_id"] for s in chosen}:
            form[f"method_{organization_id}"] = "verbal"
            form[f"days_{organization_id}"] = "30"
        sent = self.call("POST", f"/referrals/cases/{case_id}/send", form)
        if sent is None:
            return
        if sent.status_code == 302:
            self.tally.event("referrals sent")
        else:
            found = REFUSAL.search(sent.text)
            self.tally.event(f"referrals refused: {found.group(1) if found else sent.status_code}")

    def csrf(self, case_id: int) -> str | None:
        """The choose page of the case (matching runs), and the session's CSRF token."""
        page = self.call("GET", f"/referrals/cases/{case_id}/new")
        if page is None or page.status_code != 200:
            return None
        return hidden_inputs(page.text).get("csrf_token", [None])[0]

    def pick_case(self) -> int | None:
        with self.engine.connect() as conn:
            return conn.execute(text(
                "SELECT id FROM survivor_case WHERE channel = 'sms' AND status = 'open' "
                "ORDER BY random() LIMIT 1")).scalar()

    def run(self, deadline: float) -> None:
        if not self.sign_in():
            self.tally.failure("web: sign-in refused")
            return
        while time.monotonic() < deadline:
            case_id = self.pick_case()
            if case_id is None:
                time.sleep(0.5)
                continue
            if case_id in self.granted and self.rng.random() < 0.2:
                self.consent(case_id, "withdraw")
                self.granted.discard(case_id)
            else:
                if case_id not in self.granted:
                    self.consent(case_id, "grant")
                    self.granted.add(case_id)
                self.refer(case_id)
            time.sleep(self.rng.uniform(0.05, 0.3))


@dataclass
class BedSamples:
    samples: int = 0
    violations: list[str] = field(default_factory=list)


BED_SQL = (
    "SELECT s.id, s.beds_total, s.beds_available, (SELECT count(*) FROM referral r "
    "WHERE r.service_id = s.id AND r.hold_status = 'held') FROM service s "
    "WHERE s.category = 'shelter' AND s.beds_total IS NOT NULL"
)


def bed_violations(rows: list[tuple[int, int, int, int]]) -> list[str]:
    """The shelters that break the bed rule in one snapshot: (id, total, free, held)."""
    out = []
    for service_id, total, free, held in rows:
        if free is None:
            continue
        if free < 0 or free + held > total:
            out.append(f"shelter #{service_id}: {free} free + {held} held of {total}")
    return out


def sample_beds(engine: Any, stop: threading.Event, found: BedSamples) -> None:
    while not stop.is_set():
        with engine.connect() as conn:
            rows = [tuple(r) for r in conn.execute(text(BED_SQL))]
        found.samples += 1
        found.violations.extend(bed_violations(rows))  # type: ignore[arg-type]
        stop.wait(0.2)


# --- checking the outbox -----------------------------------------------------------------------


@dataclass
class SendCheck:
    sends: int
    messages: int
    sent_once: int
    sent_unrecorded: list[str]  # sends whose SID is on no message (a second send, or lost)
    marked_not_sent: list[int]  # messages marked sent whose SID no send returned
    unsent: list[int]  # due messages still queued
    statuses: Counter[str]

    @property
    def ok(self) -> bool:
        return not (self.sent_unrecorded or self.marked_not_sent or self.unsent)


def check_sends(sends: list[str], messages: list[tuple[int, str, str | None, bool]]) -> SendCheck:
    """``sends``: every SID a worker's backend returned, one per send. ``messages``: every
    outbound message as (id, status, twilio_sid, due). Each send must be the SID of exactly
    one message (a message sent twice leaves a SID on none), each message marked sent must
    carry a SID some send returned, and no due message may be left queued."""
    by_sid: dict[str, int] = {
        sid: message_id for message_id, _status, sid, _due in messages if sid
    }
    per_message: Counter[int] = Counter()
    unrecorded = []
    for sid in sends:
        if sid in by_sid:
            per_message[by_sid[sid]] += 1
        else:
            unrecorded.append(sid)
    marked_not_sent = [
        message_id for message_id, status, sid, _due in messages
        if status in SENT_STATUSES and per_message[message_id] == 0
    ]
    twice = [message_id for message_id, n in per_message.items() if n > 1]
    unsent = [message_id for message_id, status, _sid, due in messages
              if status == "queued" and due]
    return SendCheck(
        sends=len(sends),
        messages=len(messages),
        sent_once=sum(1 for n in per_message.values() if n == 1),
        sent_unrecorded=unrecorded + [f"message #{m}" for m in twice],
        marked_not_sent=marked_not_sent,
        unsent=unsent,
        statuses=Counter(status for _id, status, _sid, _due in messages),
    )


def access_log_5xx(paths: list[str]) -> tuple[int, int]:
    """(requests logged, answers >= 500) in gunicorn access logs."""
    logged = errors = 0
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for entry in fh:
                found = ACCESS_STATUS.match(entry)
                if found:
                    logged += 1
                    errors += int(found.group(1)) >= 500
    return logged, errors


def logged_errors(folder: str) -> list[str]:
    """Error lines of the servers' and workers' own logs (Haven logs the type and place of
    an unhandled exception, never values; a traceback's last line is kept)."""
    found = []
    for entry in sorted(os.listdir(folder)):
        if not entry.endswith(".log") or entry.endswith(".access.log"):
            continue
        with open(os.path.join(folder, entry), encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
        for number, entry_line in enumerate(lines):
            if " ERROR " in entry_line or " CRITICAL " in entry_line:
                found.append(f"{entry}: {entry_line.strip()}")
            elif entry_line.startswith("Traceback"):
                tail = next((x for x in lines[number + 1:] if x and not x.startswith(" ")), "")
                found.append(f"{entry}: {tail.strip()}")
    return found


# --- orchestration -----------------------------------------------------------------------------


def base_env(url: str, keys: dict[str, str], args: argparse.Namespace) -> dict[str, str]:
    env = common.child_env()
    env.update(keys)
    env.update({
        "HAVEN_ENV": "development",
        "DATABASE_URL": url,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "SMS_BACKEND": "console",
        "PUBLIC_BASE_URL": "",
        "HAVEN_HOTLINE_ORG": HOTLINE_ORG,
        "SMS_RATE_PER_SECOND": "50",
        "HAVEN_WORKERS": str(args.web_workers),
    })
    return env


def seed(env: dict[str, str], args: argparse.Namespace) -> tuple[list[dict[str, Any]], str]:
    """Migrate; the hotline's NGO with caseworkers, areas, and shelters with few beds and
    registered intake phones. Returns the shelters and the caseworkers' password."""
    config = common.find("config:config_from_env")(env)
    app = common.find("app:create_app")(config)
    db = common.find("app.core.extensions:db", "app.extensions:db")
    models = common.find("app.models")
    password = secrets.token_urlsafe(24)
    shelters: list[dict[str, Any]] = []
    with app.app_context():
        common.migrate()
        db.session.add(models.Organization(name=HOTLINE_ORG, kind="ngo"))
        areas = [models.Area(name=f"Soak {name}", sms_label=name)
                 for name in ("North", "South", "East")]
        db.session.add_all(areas)
        for i in range(args.shelters):
            org = models.Organization(name=f"Soak Shelter {i + 1}", kind="provider")
            service = models.Service(
                organization=org, name=f"Soak shelter {i + 1}", description="",
                category="shelter", languages="en", hours=ALWAYS, timezone="UTC",
                accepts_children=True, beds_total=args.beds, beds_available=args.beds,
                areas=[areas[i % len(areas)]],
            )
            service.set_intake_phone(f"{SHELTER_PREFIX}{i:04d}")
            db.session.add_all([org, service])
            db.session.flush()
            shelters.append({"id": service.id, "organization_id": org.id,
                             "phone": f"{SHELTER_PREFIX}{i:04d}", "total": args.beds})
        db.session.commit()
        runner = app.test_cli_runner()
        for k in range(args.caseworkers):
            made = runner.invoke(args=[
                "create-user", "--organization", HOTLINE_ORG, "--username", f"soak-cw{k}",
                "--role", "caseworker", "--password-stdin"], input=password + "\n")
            if made.exit_code != 0:
                raise SystemExit(f"create-user failed: {made.output}")
        db.session.remove()
        db.engine.dispose()
    return shelters, password


def start_instances(env: dict[str, str], args: argparse.Namespace, logs: str,
                    processes: list[subprocess.Popen[bytes]]) -> tuple[list[int], list[str]]:
    ports, access_logs = [], []
    config = os.path.join(common.ROOT, "app", "gunicorn.conf.py")
    for i in range(args.instances):
        port = free_port()
        access = os.path.join(logs, f"web{i}.access.log")
        with open(access, "wb") as out, open(os.path.join(logs, f"web{i}.error.log"), "wb") as err:
            processes.append(subprocess.Popen(
                [os.path.join(common.BIN, "gunicorn"), "-c", config, "--no-control-socket",
                 "app:create_app()"],
                env=dict(env, HAVEN_BIND=f"127.0.0.1:{port}"), cwd=common.ROOT,
                stdout=out, stderr=err,
            ))
        ports.append(port)
        access_logs.append(access)
    for port in ports:
        wait_for(port, processes)
    return ports, access_logs


def start_workers(env: dict[str, str], args: argparse.Namespace, logs: str,
                  processes: list[subprocess.Popen[bytes]]) -> list[subprocess.Popen[bytes]]:
    workers = []
    for i in range(args.sms_workers):
        with open(os.path.join(logs, f"sms{i}.log"), "wb") as out:
            worker = subprocess.Popen(
                [sys.executable, "-m", "bench.soak", "--sms-worker",
                 os.path.join(logs, f"sms{i}.sends")],
                env=env, cwd=common.ROOT, stdout=out, stderr=subprocess.STDOUT,
            )
        processes.append(worker)
        workers.append(worker)
    return workers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(port: int, processes: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        if any(p.poll() is not None for p in processes):
            break
        time.sleep(0.3)
    raise SystemExit(f"an instance did not start on port {port} (see its error log)")


def stop(processes: list[subprocess.Popen[bytes]], timeout: float = 30) -> None:
    for p in processes:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in processes:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def drain(engine: Any, seconds: float) -> None:
    """Wait for the workers to send every due message (at most ``seconds``)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            due = conn.execute(text(
                "SELECT count(*) FROM sms_message WHERE direction = 'out' AND status = 'queued' "
                "AND next_attempt_at <= now()")).scalar_one()
        if not due:
            return
        time.sleep(0.5)


def soak(args: argparse.Namespace) -> int:
    print(f"soak: {args.instances} instances x {args.web_workers} gunicorn workers, "
          f"{args.sms_workers} sms workers, one PostgreSQL database, {args.seconds:.0f} s of "
          f"traffic; {common.load_average()}", flush=True)
    name = common.pg_create()
    url = common.pg_url(name)
    engine = create_engine(url, pool_size=args.survivors + args.caseworkers + 4)
    processes: list[subprocess.Popen[bytes]] = []
    logs = tempfile.mkdtemp(prefix="haven-soak-")
    try:
        env = base_env(url, common.secrets_env(), args)
        shelters, password = seed(env, args)
        ports, access_logs = start_instances(env, args, logs, processes)
        workers = start_workers(env, args, logs, processes)
        tally = Tally()
        rng = random.Random(args.seed)
        cluster = Cluster(ports, tally, random.Random(rng.random()))
        deadline = time.monotonic() + args.seconds
        beds = BedSamples()
        stop_sampling = threading.Event()
        threads = [threading.Thread(target=tally.guarded(sample_beds),
                                    args=(engine, stop_sampling, beds))]
        per = 10_000 // max(1, args.survivors)
        threads.extend(threading.Thread(target=tally.guarded(survivor), args=(
            cluster, tally, k * per, min(per, 200), deadline, rng.random()))
            for k in range(args.survivors))
        threads.extend(threading.Thread(target=tally.guarded(provider), args=(
            cluster, tally, engine, shelters, deadline, rng.random()))
            for _ in range(args.providers))
        for k in range(args.caseworkers):
            worker = Caseworker(cluster, tally, engine, shelters, f"soak-cw{k}", password,
                                int(rng.random() * 1e9))
            threads.append(threading.Thread(target=tally.guarded(worker.run), args=(deadline,)))
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads[1:]:
            t.join()
        print(f"soak: traffic done in {time.monotonic() - started:.0f} s; draining the outbox",
              flush=True)
        drain(engine, 60)
        stop(workers)
        stop_sampling.set()
        threads[0].join()
        stop([p for p in processes if p not in workers])
        sends: list[str] = []
        for i in range(args.sms_workers):
            path = os.path.join(logs, f"sms{i}.sends")
            if os.path.exists(path):
                with open(path, encoding="utf-8") as fh:
                    sends += [entry.split()[0] for entry in fh if entry.strip()]
        with engine.connect() as conn:
            messages = [
                (r[0], r[1], r[2], bool(r[3])) for r in conn.execute(text(
                    "SELECT id, status, twilio_sid, next_attempt_at <= now() FROM sms_message "
                    "WHERE direction = 'out' ORDER BY id"))
            ]
        engine.dispose()
        outbox = check_sends(sends, messages)
        audit = subprocess.run([os.path.join(common.BIN, "flask"), "--app", "app", "audit",
                                "verify"], env=env, cwd=common.ROOT, capture_output=True,
                               text=True, check=False)
        logged, logged_5xx = access_log_5xx(access_logs)
        errors_logged = logged_errors(logs)
        return report(args, tally, outbox, beds, audit, logged, logged_5xx, errors_logged)
    finally:
        stop(processes, 10)
        engine.dispose()
        common.pg_drop(name)
        if args.keep_logs:
            shutil.copytree(logs, args.keep_logs, dirs_exist_ok=True)
        shutil.rmtree(logs, ignore_errors=True)


def report(args: argparse.Namespace, tally: Tally, outbox: SendCheck, beds: BedSamples,
           audit: subprocess.CompletedProcess[str], logged: int, logged_5xx: int,
           errors_logged: list[str]) -> int:
    seen = tally.count(lambda _kind, _status: True)
    seen_5xx = tally.count(lambda _kind, status: status >= 500)
    by_kind = Counter[str]()
    for (kind, _status), n in tally.answers.items():
        by_kind[kind] += n
    failures = sum(tally.failures.values())
    print(f"  answers: {seen:,} ({', '.join(f'{k} {n:,}' for k, n in sorted(by_kind.items()))}); "
          f"{seen_5xx} of 500 or more; {failures} connection errors "
          f"{dict(tally.failures) if failures else ''}")
    statuses: Counter[int] = Counter()
    for (_kind, status), n in tally.answers.items():
        statuses[status] += n
    print(f"  status codes: {dict(sorted(statuses.items()))}")
    print(f"  access logs: {logged:,} requests, {logged_5xx} of 500 or more; "
          f"{len(errors_logged)} errors in the servers' and workers' logs")
    for entry in errors_logged[:10]:
        print(f"    {entry}")
    print(f"  traffic: {dict(sorted(tally.events.items()))}")
    print(f"  outbox: {outbox.messages} outbound messages {dict(outbox.statuses)}; "
          f"{outbox.sends} sends by the workers, {outbox.sent_once} messages sent exactly once, "
          f"{len(outbox.sent_unrecorded)} sends on no message, {len(outbox.marked_not_sent)} "
          f"marked sent without a send, {len(outbox.unsent)} due and unsent")
    print(f"  beds: {beds.samples} samples of {args.shelters} shelters, "
          f"{len(beds.violations)} broke the rule {beds.violations[:5] if beds.violations else ''}")
    print(f"  audit: flask audit verify exited {audit.returncode}: "
          f"{(audit.stdout or audit.stderr).strip().splitlines()[-1:]}")
    results = common.Results("soak")
    problems = seen_5xx + logged_5xx + failures + len(errors_logged)
    results.judge("no 5xx (clients, access logs), no connection error, no error logged",
                  f"{problems}", problems == 0)
    results.judge("every message sent once", f"{outbox.sent_once}/{outbox.sends}", outbox.ok)
    results.judge("no overbooked bed at any sample", f"{len(beds.violations)}",
                  not beds.violations and beds.samples > 0)
    results.judge("audit chain intact (flask audit verify)", f"exit {audit.returncode}",
                  audit.returncode == 0)
    results.broken += [f"the soak's own thread failed: {e}" for e in tally.driver_errors]
    if seen == 0 or tally.events["referrals sent"] == 0:
        results.broken.append("the soak drove too little traffic to mean anything "
                              f"(answers {seen}, referrals {tally.events['referrals sent']})")
    print(f"soak: done; {common.load_average()}"
          + (f"; logs kept in {args.keep_logs}" if args.keep_logs else ""))
    common.print_verdicts(results, "many instances on one PostgreSQL")
    ok = all(v.ok for v in results.verdicts) and not results.broken
    print(f"soak: {'PASSED' if ok else 'FAILED'}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "--sms-worker":
        return sms_worker(argv[1])
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="traffic (default 60)")
    parser.add_argument("--instances", type=int, default=3, help="gunicorn instances")
    parser.add_argument("--web-workers", type=int, default=2, help="workers per instance")
    parser.add_argument("--sms-workers", type=int, default=2, help="`flask sms worker`s")
    parser.add_argument("--survivors", type=int, default=6, help="survivor threads")
    parser.add_argument("--caseworkers", type=int, default=2, help="caseworker threads")
    parser.add_argument("--providers", type=int, default=2, help="provider threads")
    parser.add_argument("--shelters", type=int, default=4)
    parser.add_argument("--beds", type=int, default=2, help="beds in each shelter")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--keep-logs", default=None, metavar="DIR",
                        help="copy the servers' and workers' logs here")
    args = parser.parse_args(argv)
    return soak(args)


if __name__ == "__main__":
    sys.exit(main())
