"""Matching benchmark (issue 4, DESIGN §8): a synthetic directory of 10,000 services across 200
areas, 1,000 random cases matched on SQLite and on PostgreSQL; p50/p95/p99 per case, the ratio
to the naive reference (load every service, filter in Python) measured in the same run, and
the query plans of the pre-filter.

    .venv/bin/python -m bench.bench_matching [--services 10000] [--cases 1000] [--naive 50]
                                             [--no-postgresql]

PostgreSQL: a scratch database is created on HAVEN_BENCH_PG_URL (default
postgresql+psycopg://postgres@127.0.0.1:5432/postgres) and dropped at the end.
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import secrets
import statistics
import tempfile
import time
import uuid
from typing import Any

from cryptography.fernet import Fernet
from sqlalchemy import create_engine, insert, text

PG_SERVER = os.environ.get(
    "HAVEN_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def make_app(url: str) -> Any:
    from app import create_app
    from config import TestingConfig

    env = {
        "SECRET_KEY": secrets.token_urlsafe(48),
        "HAVEN_DATA_KEYS": Fernet.generate_key().decode(),
        "HAVEN_INDEX_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "DATABASE_URL": url,
    }
    return create_app(TestingConfig(env))


def build_directory(rng: random.Random, n_services: int, n_areas: int) -> tuple[list[int], int]:
    from app import vocab
    from app.extensions import db
    from app.models import Area, Organization, Service, service_area

    db.create_all()
    regions = [
        {
            "id": i + 1,
            "name": f"Region {i + 1}",
            "parent_id": None,
            "latitude": rng.uniform(30, 45),
            "longitude": rng.uniform(-120, -75),
        }
        for i in range(n_areas // 10)
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
    db.session.execute(insert(Area), areas)
    n_orgs = max(1, n_services // 20)
    db.session.execute(
        insert(Organization),
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
                "hsds_id": str(uuid.uuid4()),
                "name": f"{category.title()} {i + 1}",
                "description": "",
                "category": category,
                "languages": ",".join(
                    sorted(rng.sample(vocab.SURVIVOR_LANGUAGES, rng.randint(1, 3)))
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
        for area_id in {home["id"], *(rng.choice(areas)["id"] for _ in range(rng.randint(0, 2)))}:
            links.append({"service_id": i + 1, "area_id": area_id})
    for start in range(0, len(rows), 2000):
        db.session.execute(insert(Service), rows[start : start + 2000])
    db.session.execute(insert(service_area), links)
    db.session.commit()
    db.session.execute(text("ANALYZE"))  # planner statistics, as a maintained database has
    db.session.commit()
    return [a["id"] for a in areas], len(rows)


def ages(exact: tuple[int | None, int | None]) -> dict[str, Any]:
    """Exact eligible ages and the band mask derived from them (as the model keeps them)."""
    from app.models.directory import ages_mask

    return {"min_age": exact[0], "max_age": exact[1], "age_mask": ages_mask(*exact)}


def random_cases(rng: random.Random, area_ids: list[int], n: int) -> list[Any]:
    from app import vocab
    from app.matching import MatchCriteria

    cases = []
    for _ in range(n):
        needs = rng.sample(vocab.SERVICE_CATEGORIES, rng.choice([1, 1, 2, 2, 3]))
        cases.append(
            MatchCriteria(
                needs=tuple((c, rng.choice(vocab.URGENCIES)) for c in needs),
                language=rng.choice(vocab.SURVIVOR_LANGUAGES),
                age_band=rng.choice([None, *vocab.AGE_BANDS]),
                gender=rng.choice([None, *vocab.GENDERS]),
                area_id=rng.choice(area_ids),
                children=rng.random() < 0.3,
                accessibility=frozenset(rng.sample(vocab.ACCESSIBILITY_NEEDS, rng.randint(0, 1))),
                consented_share_categories=frozenset(rng.sample(vocab.SERVICE_CATEGORIES, 3)),
            )
        )
    return cases


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def timed(fn: Any, cases: list[Any]) -> list[float]:
    from app.extensions import db

    out = []
    for c in cases:
        start = time.perf_counter()
        fn(c)
        out.append((time.perf_counter() - start) * 1000)
        db.session.expunge_all()
    return out


def explain(label: str) -> None:
    from app.extensions import db
    from app.matching import MatchCriteria, prefilter_params, prefilter_query

    c = MatchCriteria(
        needs=(("shelter", "immediate"),), age_band="25_34", gender="female", children=True
    )
    stmt = prefilter_query("shelter", c).params(**prefilter_params("shelter", c))
    sql = str(stmt.compile(db.engine, compile_kwargs={"literal_binds": True}))
    if db.engine.dialect.name == "sqlite":
        rows = db.session.execute(text("EXPLAIN QUERY PLAN " + sql)).all()
        plan = "\n".join(f"  {r[3]}" for r in rows)
    else:
        rows = db.session.execute(text("EXPLAIN " + sql)).all()
        plan = "\n".join(f"  {r[0]}" for r in rows)
    from sqlalchemy import select

    from app.models import service_area

    area_sql = str(
        select(service_area.c.service_id)
        .where(service_area.c.area_id.in_([7, 3]))
        .compile(db.engine, compile_kwargs={"literal_binds": True})
    )
    prefix = "EXPLAIN QUERY PLAN " if db.engine.dialect.name == "sqlite" else "EXPLAIN "
    area_rows = db.session.execute(text(prefix + area_sql)).all()
    area_plan = "\n".join(
        f"  {r[3] if db.engine.dialect.name == 'sqlite' else r[0]}" for r in area_rows
    )
    print(f"[{label}] pre-filter query:\n  {sql.replace(chr(10), ' ')}\n[{label}] plan:\n{plan}")
    print(f"[{label}] served-area lookup plan:\n{area_plan}")


def run(label: str, url: str, args: argparse.Namespace) -> None:
    from app.extensions import db
    from app.matching import match, naive_match

    app = make_app(url)
    with app.app_context():
        rng = random.Random(args.seed)
        t0 = time.perf_counter()
        area_ids, n = build_directory(rng, args.services, args.areas)
        print(
            f"[{label}] built {n} services across {len(area_ids)} areas in "
            f"{time.perf_counter() - t0:.1f} s"
        )
        cases = random_cases(rng, area_ids, args.cases)
        timed(lambda c: match(c), cases[:20])  # warm caches and the statement cache
        fast = timed(lambda c: match(c), cases)
        sample = cases[: args.naive]
        naive = timed(lambda c: naive_match(c), sample)
        fast_same = fast[: args.naive]
        needs = statistics.mean(len(c.needs) for c in cases)
        print(
            f"[{label}] match, {len(cases)} cases ({needs:.1f} needs each on average): "
            f"p50 {percentile(fast, 50):.2f} ms  p95 {percentile(fast, 95):.2f} ms  "
            f"p99 {percentile(fast, 99):.2f} ms  max {max(fast):.2f} ms"
        )
        print(
            f"[{label}] naive reference, first {len(sample)} of the same cases: "
            f"p50 {percentile(naive, 50):.1f} ms  p95 {percentile(naive, 95):.1f} ms"
        )
        print(
            f"[{label}] ratio match/naive on those cases: p50 "
            f"{percentile(fast_same, 50) / percentile(naive, 50):.3f}  p95 "
            f"{percentile(fast_same, 95) / percentile(naive, 95):.3f}  "
            f"(naive is {percentile(naive, 50) / percentile(fast_same, 50):.0f}x slower at p50)"
        )
        if label == "sqlite":
            verdict = "within" if percentile(fast, 95) < 25 else "OVER"
            print(f"[{label}] budget p95 < 25 ms: {verdict}")
        explain(label)
        db.session.remove()
        db.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--areas", type=int, default=200)
    parser.add_argument("--cases", type=int, default=1_000)
    parser.add_argument(
        "--naive", type=int, default=50, help="cases timed with the naive reference"
    )
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--no-postgresql", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        run("sqlite", "sqlite:///" + os.path.join(tmp, "bench.sqlite"), args)
    if args.no_postgresql:
        return
    name = f"haven_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        run("postgresql", PG_SERVER.rsplit("/", 1)[0] + "/" + name, args)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
