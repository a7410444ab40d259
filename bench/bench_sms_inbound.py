"""SMS webhook benchmark (issue 6, DESIGN §8): ``POST /sms/inbound`` under load on gunicorn
(2 sync workers), on SQLite and on PostgreSQL, next to a bare Flask endpoint served by the
same gunicorn setup in the same run. A second process generates the load: signed Twilio
requests (RequestValidator), prepared before the clock starts, sent by a few threads over
fresh connections (gunicorn's sync workers close each one), bounded in count and time.

The traffic is hotline conversations: several hundred numbers each text "hi", a language,
YES, needs, an area, then "any news?" — so sessions, cases, consent records, audit events
and inbound message rows are all written, as in production.

    .venv/bin/python -m bench.bench_sms_inbound [--requests 2000] [--concurrency 6]
        [--seconds 30] [--phones 300] [--no-postgresql] [--no-floors]

Prints requests/s, p50 and p99 (ms) per target, the CPU time per request of the server
(gunicorn and its workers) and of the load generator, and the ratio of the app's
throughput to the bare endpoint's. Budget: ratio >= 0.4, p99 < 100 ms. 127.0.0.1 only.
Two reference floors follow (``--no-floors`` skips them): Haven's request cycle for the same
URL with no hotline work, and with only the MessageSid row written by the raw DBAPI; they show
how much of the budget the framework and one durable write already take on this machine.
PostgreSQL: a scratch database on HAVEN_BENCH_PG_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/
postgres), dropped at the end.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import Any
from urllib.parse import urlencode

from cryptography.fernet import Fernet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PG_SERVER = os.environ.get(
    "HAVEN_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
TOKEN = "bench-" + secrets.token_hex(16)
ACCOUNT_SID = "AC" + "0" * 32
OFFSET = 0  # first phone number of a load run (warm-up numbers differ from measured ones)
GUNICORN = os.path.join(os.path.dirname(sys.executable), "gunicorn")
BUDGET_RATIO = 0.4
BUDGET_P99_MS = 100.0
FLOORS = {
    "noop": "floor: no hotline work",
    "row": "floor: one raw row/message",
}


# --- the bare endpoint (served by gunicorn as bench.bench_sms_inbound:bare_app) ----------


def _bare() -> Any:
    from flask import Flask, Response

    bare = Flask("bare")

    @bare.post("/sms/inbound")
    def inbound() -> Response:
        return Response("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response />",
                        content_type="text/xml")

    return bare


bare_app = _bare() if os.environ.get("HAVEN_BENCH_BARE") == "1" else None


# --- reference floors (served as bench.bench_sms_inbound:floor_app; not Haven's webhook) ---
#
# What does the budget leave for the hotline itself? Two reference targets answer it: Haven's
# whole request cycle for POST /sms/inbound (gate, signature, form and phone checks, the
# SQLite writers' queue, commit, TwiML, headers) with the hotline replaced by
#   "noop": nothing at all, and
#   "row":  the one durable write any correct webhook needs, the MessageSid row that makes a
#           Twilio retry harmless, written with the raw DBAPI (no ORM, no SQLAlchemy Core).
# They are printed beside the real webhook, never judged against the budget.

FLOOR_ROW_SQL = (
    "INSERT INTO sms_message (direction, audience, status, twilio_sid, counterpart_index, "
    "final_at, created_at, updated_at, attempts, params, language, remote_delete_attempts) "
    "VALUES ('in', 'survivor', 'received', ?, ?, ?, ?, ?, 0, '{}', 'en', 0) "
    "ON CONFLICT (twilio_sid) DO NOTHING"
)


def _floor(mode: str) -> Any:
    from app import create_app, hotline
    from app.crypto import blind_index
    from app.extensions import db
    from app.models.base import utcnow

    def row(sid: str, e164: str, text: str, at: Any = None) -> list[str]:
        when = at or utcnow()
        raw = db.engine.raw_connection()
        try:
            cursor = raw.cursor()
            if db.engine.dialect.name == "postgresql":
                cursor.execute(FLOOR_ROW_SQL.replace("?", "%s"),
                               (sid, blind_index(e164), when, when, when))
                raw.commit()
            else:  # the pysqlite connection runs in autocommit; Haven begins IMMEDIATE
                stamp = when.strftime("%Y-%m-%d %H:%M:%S.%f")
                cursor.execute("BEGIN IMMEDIATE")
                cursor.execute(FLOOR_ROW_SQL, (sid, blind_index(e164), stamp, stamp, stamp))
                cursor.execute("COMMIT")
        finally:
            raw.close()
        return []

    def noop(sid: str, e164: str, text: str, at: Any = None) -> list[str]:
        return []

    hotline.handle_inbound = row if mode == "row" else noop  # type: ignore[assignment]
    return create_app()


floor_app = (_floor(os.environ["HAVEN_BENCH_FLOOR"])
             if os.environ.get("HAVEN_BENCH_FLOOR") in ("noop", "row") else None)


# --- load generator (a second process) ---------------------------------------------------


SCRIPTS = {
    # A whole conversation per number: first contact, language, consent (the case is
    # created: consent records, a sealed phone, audit events), needs, area, then follow-ups.
    "conversation": ["hi", "1", "yes", "1 2", "1", "any news?", "HELP", "any news?"],
    # Numbers that already finished (set up before the clock starts) texting again: the
    # steady state of a hotline, most of whose traffic is follow-ups.
    "followup": ["any news?", "thank you", "HELP", "are you there?"],
}


def prepare(port: int, count: int, phones: int, mix: str) -> list[tuple[bytes, str]]:
    from twilio.request_validator import RequestValidator

    validator = RequestValidator(TOKEN)
    url = f"http://127.0.0.1:{port}/sms/inbound"
    bodies: list[tuple[bytes, str]] = []
    step = 0
    while len(bodies) < count:
        for phone in range(phones):
            script = SCRIPTS[mix]
            params = {
                "MessageSid": "SM" + secrets.token_hex(16),
                "AccountSid": ACCOUNT_SID,
                "From": f"+1415555{(phone + OFFSET) % 10000:04d}",
                "To": "+15005550006",
                "Body": script[min(step, len(script) - 1)],
                "NumMedia": "0",
            }
            signature = validator.compute_signature(url, params)
            bodies.append((urlencode(params).encode(), signature))
            if len(bodies) >= count:
                break
        step += 1
    return bodies


def load(port: int, count: int, concurrency: int, seconds: float, phones: int,
         mix: str) -> dict[str, Any]:
    requests = prepare(port, count, phones, mix)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    lock = threading.Lock()
    cursor = iter(range(len(requests)))
    deadline = time.monotonic() + seconds

    def worker() -> None:
        while time.monotonic() < deadline:
            with lock:
                index = next(cursor, None)
            if index is None:
                return
            body, signature = requests[index]
            started = time.perf_counter()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("POST", "/sms/inbound", body=body, headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "X-Twilio-Signature": signature,
                })
                response = conn.getresponse()
                response.read()
                status = response.status
                conn.close()
            except OSError as exc:
                status = type(exc).__name__  # type: ignore[assignment]
            elapsed = time.perf_counter() - started
            with lock:
                if status == 200:
                    latencies.append(elapsed)
                else:
                    errors[str(status)] = errors.get(str(status), 0) + 1

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

    return {
        "ok": len(latencies),
        "errors": errors,
        "wall": wall,
        "rps": len(latencies) / wall if wall else 0.0,
        "p50": pct(0.50),
        "p99": pct(0.99),
        "mean": statistics.fmean(ordered) * 1000 if ordered else float("nan"),
    }


# --- orchestration -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env(database_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "HAVEN_ENV": "development",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "HAVEN_DATA_KEYS": Fernet.generate_key().decode(),
        "HAVEN_INDEX_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "DATABASE_URL": database_url,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "SMS_BACKEND": "console",
        "PUBLIC_BASE_URL": "",
        "PYTHONPATH": ROOT,
    })
    return env


def prepare_database(env: dict[str, str]) -> None:
    """Migrate to head and add the hotline's NGO and an area list (in a child process, so
    this process keeps no connection to the database under test)."""
    script = (
        "from app import create_app\n"
        "from app.extensions import db\n"
        "from app.models import Area, Organization\n"
        "from flask_migrate import upgrade\n"
        "app = create_app()\n"
        "with app.app_context():\n"
        "    upgrade(revision='heads')\n"
        "    db.session.add(Organization(name='Hotline NGO', kind='ngo'))\n"
        "    for i in range(12):\n"
        "        db.session.add(Area(name=f'Area {i:02d}'))\n"
        "    db.session.commit()\n"
    )
    subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def serve(target: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    process = subprocess.Popen(
        [GUNICORN, "--workers", "2", "--worker-class", "sync", "--bind", f"127.0.0.1:{port}",
         "--log-level", "warning", "--timeout", "30", target],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise SystemExit(f"gunicorn did not start for {target}") from None
            time.sleep(0.2)
    return process, port


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by gunicorn's master and its workers (Linux
    /proc; NaN elsewhere)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            pids = [pid, *map(int, fh.read().split())]
    except OSError:
        return float("nan")
    total = 0.0
    for each in pids:
        try:
            with open(f"/proc/{each}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def measure(target: str, env: dict[str, str], args: argparse.Namespace,
            mix: str) -> dict[str, Any]:
    process, port = serve(target, env)
    try:
        if mix == "followup":
            # Untimed: every number goes through a whole conversation first.
            run_load(port, args.phones * len(SCRIPTS["conversation"]), args, args.phones,
                     "conversation", seconds=300)
        else:
            run_load(port, 200, args, 25, "conversation")  # warm-up on other numbers
        count = args.requests
        # CPU per request of the server and of the load generator: on a small machine they
        # share the cores, which is what bounds both figures (see the note on issue 6).
        server_before, client_before = tree_cpu(process.pid), os.times()
        result = run_load(port, count, args, args.phones, mix, offset=1000)
        server_after, client_after = tree_cpu(process.pid), os.times()
        done = max(1, result["ok"])
        result["server_ms"] = (server_after - server_before) / done * 1000
        result["client_ms"] = (
            (client_after.children_user + client_after.children_system)
            - (client_before.children_user + client_before.children_system)
        ) / done * 1000
        return result
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()


def run_load(port: int, count: int, args: argparse.Namespace, phones: int, mix: str,
             seconds: float | None = None, offset: int = 0) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_sms_inbound", "--load-generator", str(port),
         "--requests", str(count), "--concurrency", str(args.concurrency),
         "--seconds", str(seconds or args.seconds), "--phones", str(phones), "--token", TOKEN,
         "--mix", mix, "--offset", str(0 if mix == "followup" else offset)],
        cwd=ROOT, check=True, capture_output=True, text=True,
        env=dict(os.environ, PYTHONPATH=ROOT),
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def line(name: str, r: dict[str, Any]) -> str:
    errors = f"  errors {r['errors']}" if r["errors"] else ""
    return (f"  {name:<28} {r['rps']:8.0f} req/s   p50 {r['p50']:6.1f} ms   "
            f"p99 {r['p99']:6.1f} ms   ({r['ok']} requests){errors}\n"
            f"    CPU per request: server {r['server_ms']:.2f} ms, "
            f"load generator {r['client_ms']:.2f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--phones", type=int, default=300)
    parser.add_argument("--no-postgresql", action="store_true")
    parser.add_argument("--mix", choices=[*SCRIPTS, "both"], default="both",
                        help="conversation: whole conversations; followup: numbers that "
                        "finished texting again; both (default)")
    parser.add_argument("--no-floors", action="store_true",
                        help="skip the two reference floors (Haven's request cycle with no "
                        "hotline work, and with only the MessageSid row)")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when a mix is over budget")
    parser.add_argument("--offset", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--load-generator", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--token", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.load_generator is not None:
        global TOKEN, OFFSET
        TOKEN = args.token or TOKEN
        OFFSET = args.offset
        result = load(args.load_generator, args.requests, args.concurrency, args.seconds,
                      args.phones, args.mix)
        print(json.dumps(result))
        return 0

    from sqlalchemy import create_engine, text

    backends = ["sqlite"] + ([] if args.no_postgresql else ["postgresql"])
    mixes = list(SCRIPTS) if args.mix == "both" else [args.mix]
    failed = False
    print(f"POST /sms/inbound, gunicorn 2 sync workers, {args.requests} signed requests, "
          f"{args.concurrency} client threads, at most {args.seconds:.0f} s per target")
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            pg_name = None
            if backend == "sqlite":
                url = "sqlite:///" + os.path.join(tmp, "bench.sqlite")
            else:
                pg_name = f"haven_bench_{uuid.uuid4().hex[:10]}"
                admin = create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
                with admin.connect() as conn:
                    conn.execute(text(f'CREATE DATABASE "{pg_name}"'))
                admin.dispose()
                url = PG_SERVER.rsplit("/", 1)[0] + "/" + pg_name
            try:
                env = base_env(url)
                prepare_database(env)
                bare = measure("bench.bench_sms_inbound:bare_app",
                               dict(env, HAVEN_BENCH_BARE="1"), args, "conversation")
                results = {mix: measure("app:create_app()", env, args, mix) for mix in mixes}
                floors = {} if args.no_floors else {
                    mode: measure("bench.bench_sms_inbound:floor_app",
                                  dict(env, HAVEN_BENCH_FLOOR=mode), args, "conversation")
                    for mode in FLOORS
                }
            finally:
                if pg_name is not None:
                    admin = create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
                    with admin.connect() as conn:
                        conn.execute(text(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))
                    admin.dispose()
            print(f"{backend}:")
            print(line("bare Flask endpoint", bare))
            for mix, real in results.items():
                ratio = real["rps"] / bare["rps"] if bare["rps"] else 0.0
                ok = ratio >= BUDGET_RATIO and real["p99"] < BUDGET_P99_MS
                failed |= bool(real["errors"]) or (args.strict and not ok)
                print(line(f"Haven /sms/inbound, {mix}", real))
                print(f"    ratio {ratio:.2f} (budget >= {BUDGET_RATIO}), p99 {real['p99']:.1f} ms "
                      f"(budget < {BUDGET_P99_MS:.0f} ms): {'OK' if ok else 'OVER BUDGET'}")
            for mode, floor in floors.items():
                ratio = floor["rps"] / bare["rps"] if bare["rps"] else 0.0
                failed |= bool(floor["errors"])
                print(line(FLOORS[mode], floor))
                print(f"    ratio {ratio:.2f} (a reference, not judged)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
