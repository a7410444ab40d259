"""Retention benchmark (issue 7, DESIGN §8): seed N closed cases past their retention date,
each with 3 consent records, a need, a referral (with its release) and 2 delivered outbound
messages, then time ONE `retention run` on SQLite and PostgreSQL. Prints the duration, rows
per second and the run's peak memory; 10,000 vs 100,000 cases shows the memory is flat.

    .venv/bin/python -m bench.bench_retention [--sizes 10000,100000] [--no-postgresql]

Seeding uses bulk inserts (one realistic ciphertext per field, reused: same sizes as real
rows). The run itself happens in a child process (`--child`), so its peak memory
(``ru_maxrss``) is the run's alone, not the seeding's. PostgreSQL: a scratch database on
HAVEN_BENCH_PG_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres), dropped
at the end. Budget: 100,000 cases in under 60 s, memory flat.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.fernet import Fernet
from sqlalchemy import create_engine, insert, text

PG_SERVER = os.environ.get(
    "HAVEN_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
CHUNK = 5_000


def bench_env(url: str) -> dict[str, str]:
    return {
        "SECRET_KEY": os.environ.get("BENCH_SECRET_KEY") or secrets.token_urlsafe(48),
        "HAVEN_DATA_KEYS": os.environ.get("BENCH_DATA_KEYS") or Fernet.generate_key().decode(),
        "HAVEN_INDEX_KEY": os.environ.get("BENCH_INDEX_KEY")
        or base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "DATABASE_URL": url,
    }


def make_app(env: dict[str, str]) -> Any:
    from app import create_app
    from config import TestingConfig

    return create_app(TestingConfig(env))


def chunks(rows: list[dict[str, Any]]) -> Any:
    for i in range(0, len(rows), CHUNK):
        yield rows[i : i + CHUNK]


def seed(n: int, now: datetime) -> dict[str, int]:
    """N due cases and what hangs off them, with bulk inserts. Returns row counts."""
    from flask_migrate import upgrade

    from app.crypto import keyring
    from app.extensions import db
    from app.models import (
        Area,
        Case,
        Consent,
        DataKey,
        Message,
        Need,
        Organization,
        Service,
    )
    from app.models.referrals import Referral, Release

    upgrade(revision="heads")
    ring = keyring()
    record_key = Fernet.generate_key()
    wrapped = ring.multi.encrypt(record_key)
    fp = ring.current_fp
    sealer = Fernet(record_key)
    alias, phone, note = (
        sealer.encrypt(v.encode()) for v in ("Rosa Example", "+14155550123", "Prefers mornings")
    )
    db.session.execute(
        insert(Organization),
        [
            {"id": 1, "name": "Bench NGO", "kind": "ngo", "totp_required": False},
            {"id": 2, "name": "Bench Legal", "kind": "provider", "totp_required": False},
        ],
    )
    db.session.execute(insert(Area), [{"id": 1, "name": "Bench Area"}])
    db.session.execute(
        insert(Service),
        [
            {
                "id": 1,
                "organization_id": 2,
                "name": "Bench legal aid",
                "category": "legal",
                "hsds_id": str(uuid.uuid4()),
                "description": "",
                "languages": "en",
                "hours": [],
                "timezone": "UTC",
                "gender_mask": 15,
                "age_mask": 63,
                "accepts_children": True,
                "wheelchair_access": False,
                "hearing_access": False,
                "active": True,
                "created_at": now,
                "updated_at": now,
            }
        ],
    )
    created = now - timedelta(days=200)
    closed = now - timedelta(days=100)
    due = now - timedelta(days=10)
    counts: dict[str, int] = {}

    def put(model: Any, rows: list[dict[str, Any]]) -> None:
        for part in chunks(rows):
            db.session.execute(insert(model), part)
        counts[model.__tablename__] = counts.get(model.__tablename__, 0) + len(rows)

    step = 10_000
    for start in range(1, n + 1, step):
        ids = range(start, min(n, start + step - 1) + 1)
        put(
            DataKey,
            [{"id": i, "wrapped": wrapped, "master_fp": fp, "created_at": created} for i in ids],
        )
        put(
            Case,
            [
                {
                    "id": i,
                    "reference": f"B{i:06d}",
                    "organization_id": 1,
                    "channel": "tablet",
                    "status": "closed",
                    "data_key_id": i,
                    "alias_enc": alias,
                    "phone_enc": phone,
                    "note_enc": note,
                    "phone_index": secrets.token_hex(32),
                    "language": "en",
                    "age_band": "25_34",
                    "area_id": 1,
                    "accessibility": False,
                    "no_voicemail": False,
                    "do_not_text": False,
                    "created_at": created,
                    "updated_at": closed,
                    "closed_at": closed,
                    "retention_due_at": due,
                }
                for i in ids
            ],
        )
        put(
            Consent,
            [
                {
                    "case_id": i,
                    "scope": scope,
                    "granted": True,
                    "method": "verbal",
                    "text_version": "2026-11",
                    "language": "en",
                    "recorded_at": created,
                    "expires_at": created + timedelta(days=365),
                }
                for i in ids
                for scope in ("store", "contact_sms", "share_legal")
            ],
        )
        put(
            Need,
            [
                {"case_id": i, "category": "legal", "urgency": "soon", "created_at": created}
                for i in ids
            ],
        )
        put(
            Release,
            [
                {
                    "id": i,
                    "case_id": i,
                    "organization_id": 2,
                    "method": "verbal",
                    "granted_at": created,
                    "expires_at": created + timedelta(days=30),
                }
                for i in ids
            ],
        )
        put(
            Referral,
            [
                {
                    "id": i,
                    "code": f"R{i:06d}",
                    "case_id": i,
                    "service_id": 1,
                    "category": "legal",
                    "organization_id": 2,
                    "referring_organization_id": 1,
                    "release_id": i,
                    "shared_fields": ["reference", "needs"],
                    "status": "completed",
                    "created_at": created,
                    "updated_at": closed,
                    "hold_expires_at": created,
                    "hold_status": "none",
                    "responded_at": created + timedelta(hours=3),
                    "outcome_at": closed,
                }
                for i in ids
            ],
        )
        put(
            Message,
            [
                {
                    "direction": "out",
                    "audience": "survivor",
                    "template_key": "survivor.update",
                    "language": "en",
                    "params": {},
                    "status": "delivered",
                    "attempts": 1,
                    "remote_delete_attempts": 0,
                    "case_id": i,
                    "counterpart_index": None,
                    "created_at": created,
                    "updated_at": created,
                    "final_at": created,
                    "twilio_sid": f"SM{i:08d}{k}",
                    "remote_deleted_at": created,
                }
                for i in ids
                for k in (0, 1)
            ],
        )
        db.session.commit()
    if db.engine.dialect.name == "postgresql":
        db.session.commit()
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    return counts


def child(url: str, now_iso: str) -> None:
    """Run retention once; print a JSON line with the results."""
    from app import retention
    from app.extensions import db

    app = make_app(bench_env(url))
    with app.app_context():
        db.session.execute(text("SELECT count(*) FROM survivor_case")).scalar()
        db.session.rollback()
        baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        traced = os.environ.get("BENCH_TRACEMALLOC") == "1"
        if traced:  # Python allocations of the run itself (slower: not used for timing)
            tracemalloc.start()
        started = time.perf_counter()
        report = retention.run(datetime.fromisoformat(now_iso))
        duration = time.perf_counter() - started
        traced_peak = tracemalloc.get_traced_memory()[1] if traced else None
        if traced:
            tracemalloc.stop()
        erased = db.session.scalar(
            text("SELECT count(*) FROM survivor_case WHERE status = 'erased'")
        )
        left = db.session.scalar(text("SELECT count(*) FROM data_key"))
        db.session.remove()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "duration": duration,
                "peak_kb": peak_kb,
                "baseline_kb": baseline_kb,
                "traced_peak": traced_peak,
                "erased": erased,
                "keys_left": left,
                "counts": {r.name: r.count for r in report.results},
                "seconds": {r.name: round(r.seconds, 2) for r in report.results},
            }
        )
    )


def measure(label: str, url: str, n: int, traced: bool = False) -> dict[str, Any]:
    env = bench_env(url)
    now = datetime.now(UTC).replace(microsecond=0)
    app = make_app(env)
    from app.extensions import db

    with app.app_context():
        started = time.perf_counter()
        counts = seed(n, now)
        seeded = time.perf_counter() - started
        db.session.remove()
        db.engine.dispose()
    rows = sum(counts.values())
    child_env = dict(
        os.environ,
        BENCH_SECRET_KEY=env["SECRET_KEY"],
        BENCH_DATA_KEYS=env["HAVEN_DATA_KEYS"],
        BENCH_INDEX_KEY=env["HAVEN_INDEX_KEY"],
        BENCH_TRACEMALLOC="1" if traced else "0",
    )
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_retention", "--child", url, now.isoformat()],
        env=child_env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        print(out.stderr[-3000:])
        raise SystemExit(f"[{label}] retention run failed")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["erased"] == n and result["keys_left"] == 0, result
    duration = result["duration"]
    if traced:
        print(
            f"[{label}] {n:>7,} cases: Python allocations of the run peak at "
            f"{result['traced_peak'] / 1024 / 1024:.1f} MB (tracemalloc on: timing not "
            f"comparable, {duration:.1f} s)"
        )
        return {"n": n, "traced_peak": result["traced_peak"]}
    print(
        f"[{label}] {n:>7,} cases ({rows:,} rows seeded in {seeded:.1f} s): retention run "
        f"{duration:.1f} s, {n / duration:,.0f} cases/s, {rows / duration:,.0f} rows/s, "
        f"peak memory {result['peak_kb'] / 1024:.0f} MB "
        f"(+{(result['peak_kb'] - result['baseline_kb']) / 1024:.1f} MB during the run); "
        f"{'within' if n < 100_000 or duration < 60 else 'OVER'} budget"
    )
    slow = {k: v for k, v in result["seconds"].items() if v >= 0.05}
    print(f"[{label}]          time per rule (s): {slow}")
    return {
        "n": n,
        "duration": duration,
        "peak_kb": result["peak_kb"],
        "growth_kb": result["peak_kb"] - result["baseline_kb"],
    }


def run_backend(label: str, url_for: Any, sizes: list[int], traced: bool = False) -> None:
    results = [measure(label, url_for(n), n, traced) for n in sizes]
    if traced and len(results) > 1:
        small, large = results[0], results[-1]
        print(
            f"[{label}] traced peak {small['n']:,} -> {large['n']:,} cases: "
            f"{small['traced_peak'] / 1048576:.1f} MB -> {large['traced_peak'] / 1048576:.1f} MB"
        )
    elif len(results) > 1:
        small, large = results[0], results[-1]
        print(
            f"[{label}] memory {small['n']:,} -> {large['n']:,} cases: "
            f"{small['peak_kb'] / 1024:.0f} MB -> {large['peak_kb'] / 1024:.0f} MB "
            f"(x{large['peak_kb'] / small['peak_kb']:.2f} for x{large['n'] / small['n']:.0f} "
            f"cases); growth during the run {small['growth_kb'] / 1024:.1f} MB -> "
            f"{large['growth_kb'] / 1024:.1f} MB"
        )


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--no-postgresql", action="store_true")
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="measure the run's Python allocations (tracemalloc) instead of timing it",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        run_backend(
            "sqlite",
            lambda n: "sqlite:///" + os.path.join(tmp, f"bench-{n}.sqlite"),
            sizes,
            args.tracemalloc,
        )
    if args.no_postgresql:
        return
    admin = create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
    made: list[str] = []

    def pg_url(n: int) -> str:
        name = f"haven_bench_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        made.append(name)
        return PG_SERVER.rsplit("/", 1)[0] + "/" + name

    try:
        run_backend("postgresql", pg_url, sizes, args.tracemalloc)
    finally:
        with admin.connect() as conn:
            for name in made:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
