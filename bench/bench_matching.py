"""Matching benchmark (DESIGN §8): match one case against a synthetic directory, on SQLite
and on PostgreSQL, judged against the naive reference measured in the same run.

Budgets (DESIGN §8, "match one case against 10,000 services"):
  * ``match`` at least 40× faster than the naive reference (``bench.naive_matching``: every
    service loaded as an ORM object and filtered in Python), median against median, on the
    same cases, at 10,000 services;
  * p95 of ``match`` at 100,000 services at most 3× its p95 at 10,000 (cost may grow, but
    much slower than the directory).

The directory: services across 200 areas (regions and towns with coordinates), categories,
languages, eligibility, hours and bed counts drawn at random with a fixed seed; 300 random
cases are matched against 10,000 services (10 of them with the naive reference too) and the
first 100 of them against 100,000 services (their p95 at both sizes is compared).

    .venv/bin/python -m bench.bench_matching [--services 10000] [--large 100000]
        [--cases 300] [--large-cases 100] [--naive 10] [--areas 200] [--seed 4]
        [--backends sqlite,postgresql] [--plans] [--strict] [--compare REV]

``--large 0`` skips the growth budget; ``--plans`` prints the query plans of the pre-filter.
PostgreSQL: scratch databases on HAVEN_BENCH_PG_URL (default
postgresql+psycopg://postgres@127.0.0.1:5432/postgres), dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, text

from bench import common
from bench.naive_matching import engine, naive_match

BUDGET_NAIVE = 40.0  # match at least this many times faster than the naive reference
BUDGET_GROWTH = 3.0  # p95 at the large directory / p95 at the small one


def vocab() -> Any:
    return common.find("app.core.vocab", "app.vocab")


def build_directory(rng: random.Random, n_services: int, n_areas: int) -> int:
    """Areas 1..n_areas (a tenth regions, the rest towns) and ``n_services`` services."""
    db = common.find("app.core.extensions:db", "app.extensions:db")
    models = common.find("app.models")
    v = vocab()
    db.create_all()
    regions = [
        {
            "id": i + 1,
            "name": f"Region {i + 1}",
            "parent_id": None,
            "latitude": rng.uniform(30, 45),
            "longitude": rng.uniform(-120, -75),
        }
        for i in range(max(1, n_areas // 10))
    ]
    towns = []
    for i in range(len(regions), n_areas):
        parent = rng.choice(regions)
        towns.append(
            {
                "id": i + 1,
                "name": f"Town {i + 1}",
                "parent_id": parent["id"],
                "latitude": parent["latitude"] + rng.uniform(-0.5, 0.5),
                "longitude": parent["longitude"] + rng.uniform(-0.5, 0.5),
            }
        )
    areas = regions + towns
    db.session.execute(insert(models.Area), areas)
    n_orgs = max(1, n_services // 20)
    db.session.execute(
        insert(models.Organization),
        [
            {"id": i + 1, "name": f"Provider {i + 1}", "kind": "provider", "totp_required": False}
            for i in range(n_orgs)
        ],
    )
    weights = {"shelter": 3, "legal": 2, "medical": 2, "psychosocial": 2, "other": 1}
    categories = list(weights)
    rows, links = [], []
    for i in range(n_services):
        category = rng.choices(categories, [weights[c] for c in categories])[0]
        home = rng.choice(areas)
        shelter = category == "shelter"
        beds = rng.randint(4, 40) if shelter else None
        hours = (
            [[d, "00:00", "24:00"] for d in range(7)]
            if shelter or rng.random() < 0.2
            else [[d, "09:00", "17:00"] for d in range(5)]
        )
        rows.append(
            {
                "id": i + 1,
                "organization_id": rng.randint(1, n_orgs),
                "hsds_id": str(uuid.UUID(int=rng.getrandbits(128))),
                "name": f"{category.title()} {i + 1}",
                "description": "",
                "category": category,
                "languages": ",".join(
                    sorted(rng.sample(v.SURVIVOR_LANGUAGES, rng.randint(1, 3)))
                ),
                "latitude": home["latitude"] + rng.uniform(-0.1, 0.1)
                if rng.random() < 0.8
                else None,
                "longitude": home["longitude"] + rng.uniform(-0.1, 0.1),
                "gender_mask": rng.choice([0b1111] * 6 + [0b0001, 0b0101, 0b0010]),
                **ages(rng.choice([(None, None)] * 6 + [(18, None), (None, 17), (None, 24)])),
                "accepts_children": rng.random() < 0.6,
                "wheelchair_access": rng.random() < 0.4,
                "hearing_access": rng.random() < 0.2,
                "hours": hours,
                "timezone": rng.choice(
                    ["America/New_York", "America/Chicago", "America/Los_Angeles"]
                ),
                "beds_total": beds,
                "beds_available": rng.randint(0, beds) if beds else None,
                "active": rng.random() < 0.95,
            }
        )
        served = {home["id"], *(rng.choice(areas)["id"] for _ in range(rng.randint(0, 2)))}
        links.extend({"service_id": i + 1, "area_id": area_id} for area_id in served)
    db.session.commit()
    bulk_insert(db, "service", rows)
    bulk_insert(db, "service_area", links)
    db.session.execute(text("ANALYZE"))  # planner statistics, as a maintained database has
    db.session.commit()
    return len(rows)


def bulk_insert(db: Any, table: str, rows: list[dict[str, Any]]) -> None:
    """Rows straight through the DBAPI's executemany (no per-value type processing: a
    100,000-service directory in seconds); JSON as text, times as each database stores them."""
    if not rows:
        return
    postgresql = db.engine.dialect.name == "postgresql"
    now = datetime.now(UTC)
    stamp: Any = now if postgresql else now.strftime("%Y-%m-%d %H:%M:%S.%f")
    names = [*rows[0], *(["created_at", "updated_at"] if table == "service" else [])]
    marks = ", ".join(
        ("%s::json" if name == "hours" else "%s") if postgresql else "?" for name in names
    )
    values = [
        tuple(json.dumps(v) if k == "hours" else v for k, v in row.items())
        + ((stamp, stamp) if table == "service" else ())
        for row in rows
    ]
    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        if not postgresql:  # Haven's pysqlite connections run in autocommit: one transaction
            cursor.execute("BEGIN IMMEDIATE")
        sql = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})"
        for start in range(0, len(values), 5000):
            cursor.executemany(sql, values[start : start + 5000])
        if postgresql:
            raw.commit()
        else:
            cursor.execute("COMMIT")
    finally:
        raw.close()


def ages(exact: tuple[int | None, int | None]) -> dict[str, Any]:
    """Exact eligible ages and the band mask derived from them (as the model keeps them)."""
    ages_mask = common.find("app.models.directory:ages_mask")
    return {"min_age": exact[0], "max_age": exact[1], "age_mask": ages_mask(*exact)}


def random_cases(seed: int, n_areas: int, n: int) -> list[Any]:
    """The same cases whatever the directory (their own random stream)."""
    rng = random.Random(seed)
    v = vocab()
    criteria = engine().MatchCriteria
    cases = []
    for _ in range(n):
        needs = rng.sample(v.SERVICE_CATEGORIES, rng.choice([1, 1, 2, 2, 3]))
        cases.append(
            criteria(
                needs=tuple((c, rng.choice(v.URGENCIES)) for c in needs),
                language=rng.choice(v.SURVIVOR_LANGUAGES),
                age_band=rng.choice([None, *v.AGE_BANDS]),
                gender=rng.choice([None, *v.GENDERS]),
                area_id=rng.randint(1, n_areas),
                children=rng.random() < 0.3,
                accessibility=frozenset(rng.sample(v.ACCESSIBILITY_NEEDS, rng.randint(0, 1))),
                consented_share_categories=frozenset(rng.sample(v.SERVICE_CATEGORIES, 3)),
            )
        )
    return cases


def timed(fn: Any, cases: list[Any]) -> list[float]:
    """Milliseconds per case."""
    db = common.find("app.core.extensions:db", "app.extensions:db")
    out = []
    for c in cases:
        start = time.perf_counter()
        fn(c)
        out.append((time.perf_counter() - start) * 1000)
        db.session.expunge_all()
    return out


def explain(label: str) -> None:
    """The plans of the pre-filter and of the served-area lookup (``--plans``)."""
    db = common.find("app.core.extensions:db", "app.extensions:db")
    m = engine()
    service_area = common.find("app.models:service_area")
    if not (hasattr(m, "prefilter_query") and hasattr(m, "prefilter_params")):
        print(f"[{label}] (no prefilter_query in this tree: no plan shown)")
        return
    c = m.MatchCriteria(
        needs=(("shelter", "immediate"),), age_band="25_34", gender="female", children=True
    )
    stmt = m.prefilter_query("shelter", c).params(**m.prefilter_params("shelter", c))
    sqlite = db.engine.dialect.name == "sqlite"
    prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
    for title, query in (
        ("pre-filter", stmt),
        ("served-area lookup",
         select(service_area.c.service_id).where(service_area.c.area_id.in_([7, 3]))),
    ):
        sql = str(query.compile(db.engine, compile_kwargs={"literal_binds": True}))
        rows = db.session.execute(text(prefix + sql)).all()
        print(f"[{label}] {title}: {sql.replace(chr(10), ' ')}")
        print("\n".join(f"    {r[3] if sqlite else r[0]}" for r in rows))


def one_directory(label: str, url: str, n_services: int, cases: list[Any],
                  args: argparse.Namespace, naive: int) -> dict[str, Any]:
    db = common.find("app.core.extensions:db", "app.extensions:db")
    match = engine().match
    app = common.make_app(dict(common.secrets_env(), DATABASE_URL=url))
    try:
        with app.app_context():
            t0 = time.perf_counter()
            built = build_directory(random.Random(args.seed), n_services, args.areas)
            print(f"[{label}] {built:,} services across {args.areas} areas, built in "
                  f"{time.perf_counter() - t0:.1f} s", flush=True)
            timed(match, cases[:20])  # warm caches and the statement cache
            fast = timed(match, cases)
            out: dict[str, Any] = {"fast": fast}
            needs = statistics.mean(len(c.needs) for c in cases)
            print(f"[{label}] match, {len(cases)} cases ({needs:.1f} needs each): "
                  f"p50 {common.percentile(fast, 50):.2f} ms  "
                  f"p95 {common.percentile(fast, 95):.2f} ms  "
                  f"p99 {common.percentile(fast, 99):.2f} ms", flush=True)
            if naive:
                sample = cases[:naive]
                slow = timed(naive_match, sample)
                out["naive"] = slow
                out["fast_same"] = fast[:naive]
                print(f"[{label}] naive reference, the first {len(sample)} of those cases: "
                      f"p50 {common.percentile(slow, 50):.1f} ms  "
                      f"p95 {common.percentile(slow, 95):.1f} ms", flush=True)
            if args.plans:
                explain(label)
            db.session.remove()
    finally:
        with app.app_context():
            db.engine.dispose()
    return out


def measure(args: argparse.Namespace) -> common.Results:
    results = common.Results("matching")
    backends = common.backends(args)
    small_n, large_n = args.services, args.large
    cases = random_cases(args.seed + 1, args.areas, args.cases)
    for backend in backends:
        with common.scratch_databases() as scratch:
            small = one_directory(f"{backend} {small_n:,}", scratch.new(backend, "small"),
                                  small_n, cases, args, args.naive)
            large = (one_directory(f"{backend} {large_n:,}", scratch.new(backend, "large"),
                                   large_n, cases[: args.large_cases], args, 0)
                     if large_n else None)
        p = common.percentile
        at = f"{small_n:,} services"
        results.figure(f"{backend}: match p50, {at}", p(small["fast"], 50), "ms")
        results.figure(f"{backend}: match p95, {at}", p(small["fast"], 95), "ms")
        if args.naive:
            naive_p50 = results.figure(f"{backend}: naive reference p50, {at} (floor)",
                                       p(small["naive"], 50), "ms")
            speedup = results.figure(
                f"{backend}: naive p50 / match p50, {at}",
                common.ratio(naive_p50, p(small["fast_same"], 50)), "x", better="higher",
            )
            results.judge(f"{backend}: match >= {BUDGET_NAIVE:.0f}x faster than naive, {at}",
                          f"{speedup:.1f}x", speedup >= BUDGET_NAIVE)
        if large is not None:
            large_p95 = results.figure(f"{backend}: match p95, {large_n:,} services",
                                       p(large["fast"], 95), "ms")
            same = small["fast"][: len(large["fast"])]  # the same cases at both sizes
            growth = results.figure(
                f"{backend}: p95 {large_n:,} / p95 {small_n:,}",
                common.ratio(large_p95, p(same, 95)), "x",
            )
            results.judge(
                f"{backend}: p95 at {large_n:,} <= {BUDGET_GROWTH:.0f}x p95 at {small_n:,}",
                f"{growth:.2f}x", growth <= BUDGET_GROWTH,
            )
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--services", type=int, default=10_000,
                        help="the directory of the speed budget (default 10,000)")
    parser.add_argument("--large", type=int, default=100_000,
                        help="the directory of the growth budget (0: skip it)")
    parser.add_argument("--areas", type=int, default=200)
    parser.add_argument("--cases", type=int, default=300,
                        help="cases timed with match (default 300)")
    parser.add_argument("--large-cases", type=int, default=100,
                        help="of those, how many are timed at the large directory (default 100; "
                        "the growth budget compares their p95 at both sizes)")
    parser.add_argument("--naive", type=int, default=10,
                        help="of those, how many are timed with the naive reference too "
                        "(default 10)")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--plans", action="store_true",
                        help="print the query plans of the pre-filter")


def main(argv: list[str] | None = None) -> int:
    return common.run("bench.bench_matching", sys.argv[1:] if argv is None else argv,
                      __doc__ or "", add_arguments, measure)


if __name__ == "__main__":
    sys.exit(main())
