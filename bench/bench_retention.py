"""Retention benchmark (DESIGN §8): erase N closed cases past their retention date, on SQLite
and on PostgreSQL, judged against a raw SQL floor on the same data in the same run.

Each case has 3 consent records, a need, a release and a referral, and 2 delivered outbound
messages. The database is seeded once per size (bulk inserts; one realistic ciphertext per
field, reused) and copied; then

  * Haven: ``flask retention run --now ...`` (the CLI of DESIGN §7, invoked in a child
    process on the seeded database), which also writes statistics, audits and vacuums;
  * the floor: on the copy, the least correct erasure in plain SQL through the same engine
    (same SQLite pragmas): the due cases' consent records, signatures, needs, referrals,
    releases, messages, conversations and tasks deleted, the cases deleted, their data keys
    deleted (key shredding); one transaction, no statistics, no audit.

Budgets ("retention erasing 100,000 due cases"):
  * Haven's run at most 3× the floor's time at the largest size;
  * 10× the cases at most 11× the time (the largest size against the smallest: time ratio at
    most 1.1× the size ratio);
  * memory flat: the run's peak RSS at the largest size at most 1.25× that at the smallest.

    .venv/bin/python -m bench.bench_retention [--sizes 10000,100000] [--backends sqlite,postgresql]
        [--tracemalloc] [--strict] [--compare REV]

``--tracemalloc`` measures the run's Python allocations instead of timing it. PostgreSQL:
scratch databases on HAVEN_BENCH_PG_URL (default
postgresql+psycopg://postgres@127.0.0.1:5432/postgres), dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.fernet import Fernet
from sqlalchemy import insert, text

from bench import common

SEED_STEP = 50_000  # cases per seeding transaction
BUDGET_FLOOR = 3.0  # Haven's run / the floor, at the largest size
BUDGET_GROWTH = 1.1  # time ratio / size ratio
BUDGET_MEMORY = 1.25  # peak RSS at the largest size / at the smallest


# --- seeding ------------------------------------------------------------------------------------


def _stamp(dialect: str) -> Any:
    """A bind value for a UTC column: the datetime (PostgreSQL) or the text SQLite stores."""
    if dialect == "postgresql":
        return lambda value: value
    return lambda value: value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def seed_statements(dialect: str) -> list[tuple[str, str, dict[str, Any]]]:
    """Set-based INSERT ... SELECT over ids :first..:last for every row of a due case (one
    statement per table and chunk: a million rows in seconds, not minutes)."""
    if dialect == "postgresql":
        series = "generate_series(CAST(:first AS INTEGER), CAST(:last AS INTEGER)) AS g(i)"
        pad6, pad8 = "lpad(CAST(i AS TEXT), 6, '0')", "lpad(CAST(i AS TEXT), 8, '0')"
        hex64 = "lpad(to_hex(i), 64, '0')"
        shared, empty = "CAST(:shared AS JSON)", "CAST(:empty AS JSON)"
    else:
        series = ("(WITH RECURSIVE s(i) AS (SELECT :first UNION ALL SELECT i + 1 FROM s "
                  "WHERE i < :last) SELECT i FROM s) AS g")
        pad6, pad8, hex64 = "printf('%06d', i)", "printf('%08d', i)", "printf('%064x', i)"
        shared, empty = ":shared", ":empty"
    out: list[tuple[str, str, dict[str, Any]]] = [
        ("data_key", "INSERT INTO data_key (id, wrapped, master_fp, created_at) "
         f"SELECT i, :wrapped, :fp, :created FROM {series}", {}),
        ("survivor_case", "INSERT INTO survivor_case (id, reference, organization_id, channel, "
         "status, data_key_id, alias_enc, phone_enc, note_enc, phone_index, language, "
         "age_band, area_id, accessibility, no_voicemail, do_not_text, created_at, "
         "updated_at, closed_at, retention_due_at) "
         f"SELECT i, 'B' || {pad6}, 1, 'tablet', 'closed', i, :alias, :phone, :note, {hex64}, "
         f"'en', '25_34', 1, :no, :no, :no, :created, :closed, :closed, :due FROM {series}", {}),
    ]
    out.extend(("consent", "INSERT INTO consent (case_id, scope, granted, decision, method, "
                "text_version, language, recorded_at, expires_at) "
                "SELECT i, :scope, :yes, 'grant', 'verbal', '2026-11', 'en', :created, "
                f":consent_expires FROM {series}", {"scope": scope})
               for scope in ("store", "contact_sms", "share_legal"))
    out += [
        ("need", "INSERT INTO need (case_id, category, urgency, created_at) "
         f"SELECT i, 'legal', 'soon', :created FROM {series}", {}),
        ("referral_release", "INSERT INTO referral_release (id, case_id, organization_id, "
         "method, granted_at, expires_at) "
         f"SELECT i, i, 2, 'verbal', :created, :release_expires FROM {series}", {}),
        ("referral", "INSERT INTO referral (id, code, case_id, service_id, category, "
         "organization_id, referring_organization_id, release_id, shared_fields, status, "
         "created_at, updated_at, hold_expires_at, hold_status, responded_at, outcome_at) "
         f"SELECT i, 'R' || {pad6}, i, 1, 'legal', 2, 1, i, {shared}, 'completed', :created, "
         f":closed, :created, 'none', :responded, :closed FROM {series}", {}),
    ]
    for k in ("0", "1"):
        out.append(("sms_message", "INSERT INTO sms_message (direction, audience, "
                    "template_key, language, params, status, attempts, remote_delete_attempts, "
                    "case_id, created_at, updated_at, final_at, twilio_sid, remote_deleted_at) "
                    f"SELECT 'out', 'survivor', 'survivor.update', 'en', {empty}, 'delivered', "
                    f"1, 0, i, :created, :created, :created, 'SM' || {pad8} || :k, :created "
                    f"FROM {series}", {"k": k}))
    return out


def seed(n: int, now: datetime) -> dict[str, int]:
    """N closed cases past their retention date and what hangs off them (the directory rows
    through the models, the rest set-based in SQL). Returns row counts per table."""
    keyring = common.find("app.core.crypto:keyring", "app.crypto:keyring")
    db = common.find("app.core.extensions:db", "app.extensions:db")
    m = common.find("app.models")

    common.migrate()
    ring = keyring()
    record_key = Fernet.generate_key()
    wrapped = ring.multi.encrypt(record_key)
    fp = ring.current_fp
    sealer = Fernet(record_key)
    alias, phone, note = (
        sealer.encrypt(v.encode()) for v in ("Rosa Example", "+14155550123", "Prefers mornings")
    )
    db.session.execute(
        insert(m.Organization),
        [
            {"id": 1, "name": "Bench NGO", "kind": "ngo", "totp_required": False},
            {"id": 2, "name": "Bench Legal", "kind": "provider", "totp_required": False},
        ],
    )
    db.session.execute(insert(m.Area), [{"id": 1, "name": "Bench Area"}])
    db.session.execute(
        insert(m.Service),
        [
            {
                "id": 1,
                "organization_id": 2,
                "name": "Bench legal aid",
                "category": "legal",
                "hsds_id": "00000000-0000-4000-8000-000000000001",
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
    db.session.commit()
    created = now - timedelta(days=200)
    closed = now - timedelta(days=100)
    dialect = db.engine.dialect.name
    stamp = _stamp(dialect)
    constants = {
        "wrapped": wrapped, "fp": fp, "alias": alias, "phone": phone, "note": note,
        "yes": True, "no": False,
        "created": stamp(created), "closed": stamp(closed),
        "due": stamp(now - timedelta(days=10)),
        "consent_expires": stamp(created + timedelta(days=365)),
        "release_expires": stamp(created + timedelta(days=30)),
        "responded": stamp(created + timedelta(hours=3)),
        "shared": '["reference", "needs"]', "empty": "{}",
    }
    statements = seed_statements(dialect)
    counts: dict[str, int] = {}
    for first in range(1, n + 1, SEED_STEP):
        last = min(n, first + SEED_STEP - 1)
        for table, sql, extra in statements:
            db.session.execute(text(sql), {**constants, **extra, "first": first, "last": last})
            counts[table] = counts.get(table, 0) + last - first + 1
        db.session.commit()
    if db.engine.dialect.name == "postgresql":
        db.session.commit()
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    return counts


# --- the floor ---------------------------------------------------------------------------------

# Plain SQL, in dependency order. ``floor_case``: the cases Haven's closed-case rule erases.
FLOOR_STATEMENTS = (
    "CREATE TEMPORARY TABLE floor_case AS SELECT id, data_key_id FROM survivor_case "
    "WHERE status = 'closed' AND retention_due_at IS NOT NULL AND retention_due_at <= :now",
    "CREATE TEMPORARY TABLE floor_key AS "
    "SELECT data_key_id AS id FROM floor_case WHERE data_key_id IS NOT NULL "
    "UNION SELECT data_key_id FROM referral WHERE data_key_id IS NOT NULL "
    "AND case_id IN (SELECT id FROM floor_case) "
    "UNION SELECT data_key_id FROM consent_signature WHERE data_key_id IS NOT NULL "
    "AND case_id IN (SELECT id FROM floor_case)",
    "DELETE FROM sms_message WHERE case_id IN (SELECT id FROM floor_case) OR referral_id IN "
    "(SELECT id FROM referral WHERE case_id IN (SELECT id FROM floor_case))",
    "DELETE FROM hotline_session WHERE case_id IN (SELECT id FROM floor_case)",
    "DELETE FROM consent_task WHERE case_id IN (SELECT id FROM floor_case)",
    "DELETE FROM consent WHERE case_id IN (SELECT id FROM floor_case)",
    "DELETE FROM need WHERE case_id IN (SELECT id FROM floor_case)",
    "DELETE FROM referral WHERE case_id IN (SELECT id FROM floor_case)",
    "DELETE FROM referral_release WHERE case_id IN (SELECT id FROM floor_case)",
    "DELETE FROM consent_signature WHERE case_id IN (SELECT id FROM floor_case)",
    "DELETE FROM survivor_case WHERE id IN (SELECT id FROM floor_case)",
    "DELETE FROM data_key WHERE id IN (SELECT id FROM floor_key)",
    "DROP TABLE floor_case",
    "DROP TABLE floor_key",
)


def floor_erase(engine: Any, now: datetime) -> int:
    """The floor: delete the due closed cases, everything that hangs off them and their data
    keys, with plain SQL in one transaction on ``engine`` (Haven's engine, so the same
    connection settings). Returns the number of cases deleted."""
    at: Any = now.astimezone(UTC)
    if engine.dialect.name == "sqlite":  # compared as text, in the stored format
        at = at.strftime("%Y-%m-%d %H:%M:%S.%f")
    with engine.begin() as conn:
        due = conn.execute(
            text("SELECT count(*) FROM survivor_case WHERE status = 'closed' "
                 "AND retention_due_at IS NOT NULL AND retention_due_at <= :now"),
            {"now": at},
        ).scalar_one()
        for statement in FLOOR_STATEMENTS:
            conn.execute(text(statement), {"now": at} if ":now" in statement else {})
    return int(due)


# --- children: one measured run each -------------------------------------------------------------


def _keys_from_env(url: str) -> dict[str, str]:
    return {
        "SECRET_KEY": os.environ["BENCH_SECRET_KEY"],
        "HAVEN_DATA_KEYS": os.environ["BENCH_DATA_KEYS"],
        "HAVEN_INDEX_KEY": os.environ["BENCH_INDEX_KEY"],
        "DATABASE_URL": url,
    }


def child_haven(url: str, now_iso: str) -> dict[str, Any]:
    """``flask retention run --now NOW`` in this process, timed; its peak memory."""
    db = common.find("app.core.extensions:db", "app.extensions:db")
    app = common.make_app(_keys_from_env(url))
    with app.app_context():
        db.session.execute(text("SELECT count(*) FROM survivor_case")).scalar()
        db.session.rollback()
    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    traced = os.environ.get("BENCH_TRACEMALLOC") == "1"
    if traced:  # Python allocations of the run itself (slower: not used for timing)
        tracemalloc.start()
    runner = app.test_cli_runner()
    with app.app_context():  # as `flask` (FlaskGroup) gives every command
        started = time.perf_counter()
        outcome = runner.invoke(args=["retention", "run", "--now", now_iso])
        duration = time.perf_counter() - started
    traced_peak = tracemalloc.get_traced_memory()[1] if traced else None
    if traced:
        tracemalloc.stop()
    if outcome.exit_code != 0:
        raise SystemExit(f"retention run failed ({outcome.exit_code}):\n{outcome.output}"
                         f"{outcome.exception!r}")
    with app.app_context():
        erased = db.session.scalar(
            text("SELECT count(*) FROM survivor_case WHERE status = 'erased'"))
        left = db.session.scalar(text("SELECT count(*) FROM data_key"))
        db.session.remove()
        db.engine.dispose()
    return {
        "duration": duration,
        "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "baseline_kb": baseline_kb,
        "traced_peak": traced_peak,
        "erased": erased,
        "keys_left": left,
        "output": outcome.output,
    }


def child_floor(url: str, now_iso: str) -> dict[str, Any]:
    db = common.find("app.core.extensions:db", "app.extensions:db")
    app = common.make_app(_keys_from_env(url))
    with app.app_context():
        db.session.execute(text("SELECT count(*) FROM survivor_case")).scalar()
        db.session.rollback()
        started = time.perf_counter()
        erased = floor_erase(db.engine, datetime.fromisoformat(now_iso))
        duration = time.perf_counter() - started
        left = db.session.scalar(text("SELECT count(*) FROM data_key"))
        cases = db.session.scalar(text("SELECT count(*) FROM survivor_case"))
        db.session.remove()
        db.engine.dispose()
    return {"duration": duration, "erased": erased, "keys_left": left, "cases_left": cases}


def in_child(kind: str, url: str, now: datetime, keys: dict[str, str],
             traced: bool = False) -> dict[str, Any]:
    env = common.child_env(
        BENCH_SECRET_KEY=keys["SECRET_KEY"],
        BENCH_DATA_KEYS=keys["HAVEN_DATA_KEYS"],
        BENCH_INDEX_KEY=keys["HAVEN_INDEX_KEY"],
        BENCH_TRACEMALLOC="1" if traced else "0",
    )
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_retention", f"--child-{kind}", url, now.isoformat()],
        env=env, cwd=common.ROOT, capture_output=True, text=True, check=False,
    )
    if out.returncode != 0:
        print(out.stdout[-2000:], out.stderr[-3000:])
        raise SystemExit(f"the {kind} run failed")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# --- one size ------------------------------------------------------------------------------------


def one_size(label: str, scratch: Any, backend: str, n: int,
             args: argparse.Namespace) -> dict[str, Any]:
    keys = common.secrets_env()
    url = scratch.new(backend, f"retention-{n}")
    now = datetime.now(UTC).replace(microsecond=0)
    db = common.find("app.core.extensions:db", "app.extensions:db")
    app = common.make_app(dict(keys, DATABASE_URL=url))
    with app.app_context():
        started = time.perf_counter()
        counts = seed(n, now)
        seeded = time.perf_counter() - started
        db.session.remove()
        db.engine.dispose()
    rows = sum(counts.values())
    copy = scratch.copy(url)
    haven = in_child("haven", url, now, keys, args.tracemalloc)
    if haven["erased"] != n or haven["keys_left"] != 0:
        raise SystemExit(f"[{label}] Haven erased {haven['erased']} of {n} cases, "
                         f"{haven['keys_left']} data keys left")
    if args.tracemalloc:
        print(f"[{label}] {n:>7,} cases: Python allocations of the run peak at "
              f"{haven['traced_peak'] / 1048576:.1f} MB (tracemalloc on: timing not "
              f"comparable, {haven['duration']:.1f} s)", flush=True)
        return {"n": n, "traced_peak": haven["traced_peak"]}
    floor = in_child("floor", copy, now, keys)
    if floor["erased"] != n or floor["keys_left"] != 0 or floor["cases_left"] != 0:
        raise SystemExit(f"[{label}] the floor deleted {floor['erased']} of {n} cases, "
                         f"{floor['keys_left']} keys and {floor['cases_left']} cases left")
    print(
        f"[{label}] {n:>7,} cases ({rows:,} rows seeded in {seeded:.1f} s): Haven's run "
        f"{haven['duration']:.2f} s ({n / haven['duration']:,.0f} cases/s), floor "
        f"{floor['duration']:.2f} s, ratio {haven['duration'] / floor['duration']:.2f}; peak "
        f"memory {haven['peak_kb'] / 1024:.0f} MB "
        f"(+{(haven['peak_kb'] - haven['baseline_kb']) / 1024:.1f} MB during the run)",
        flush=True,
    )
    return {"n": n, "haven": haven["duration"], "floor": floor["duration"],
            "peak_kb": haven["peak_kb"], "growth_kb": haven["peak_kb"] - haven["baseline_kb"]}


def measure(args: argparse.Namespace) -> common.Results:
    results = common.Results("retention")
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    backends = common.backends(args)
    for backend in backends:
        runs = []
        for n in sizes:
            with common.scratch_databases() as scratch:
                runs.append(one_size(f"{backend} {n:,}", scratch, backend, n, args))
        if args.tracemalloc:
            for r in runs:
                results.figure(f"{backend}: traced peak, {r['n']:,} cases",
                               r["traced_peak"] / 1048576, "MB")
            continue
        for r in runs:
            at = f"{r['n']:,} cases"
            results.figure(f"{backend}: Haven's run, {at}", r["haven"], "s")
            results.figure(f"{backend}: floor (raw SQL delete), {at}", r["floor"], "s")
            results.figure(f"{backend}: Haven / floor, {at}",
                           common.ratio(r["haven"], r["floor"]), "x")
            results.figure(f"{backend}: peak memory, {at}", r["peak_kb"] / 1024, "MB")
        large = runs[-1]
        share = common.ratio(large["haven"], large["floor"])
        results.judge(f"{backend}: run <= {BUDGET_FLOOR:.0f}x the floor, {large['n']:,} cases",
                      f"{share:.2f}x", share <= BUDGET_FLOOR)
        if len(runs) > 1:
            small = runs[0]
            size_ratio = large["n"] / small["n"]
            time_ratio = common.ratio(large["haven"], small["haven"])
            memory_ratio = common.ratio(large["peak_kb"], small["peak_kb"])
            results.figure(f"{backend}: time {large['n']:,} / time {small['n']:,}",
                           time_ratio, "x")
            results.judge(
                f"{backend}: {size_ratio:g}x the cases <= {size_ratio * BUDGET_GROWTH:.3g}x "
                f"the time", f"{time_ratio:.2f}x", time_ratio <= size_ratio * BUDGET_GROWTH,
            )
            results.judge(
                f"{backend}: memory flat (peak {large['n']:,} <= {BUDGET_MEMORY}x peak "
                f"{small['n']:,})", f"{memory_ratio:.2f}x", memory_ratio <= BUDGET_MEMORY,
            )
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default="10000,100000",
                        help="numbers of due cases, comma-separated (default 10000,100000): "
                        "the floor budget is judged at the largest, growth and memory "
                        "between the smallest and the largest")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="measure the run's Python allocations (tracemalloc) instead of "
                        "timing it")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 3 and argv[0] in ("--child-haven", "--child-floor"):
        child = child_haven if argv[0] == "--child-haven" else child_floor
        result = child(argv[1], argv[2])
        result.pop("output", None)
        print(json.dumps(result))
        return 0
    return common.run("bench.bench_retention", argv, __doc__ or "", add_arguments, measure)


if __name__ == "__main__":
    sys.exit(main())
