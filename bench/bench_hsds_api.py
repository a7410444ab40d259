"""HSDS API benchmark (issue 17): ``GET /hsds/services?per_page=50`` on a 10,000-service
directory, judged against a bare query of the same rows measured in the same run.

Figures: p50 and p95 of the page (through the whole Flask stack, in process), p50 and p95 of
the floor (the page's count and its 50 rows selected with plain SQL, no mapping, no JSON),
and the ratio of the p95s. DESIGN §8 sets no budget for this page; the one verdict is that a
page costs the same number of SQL statements whether it holds 5 services or 50 (no query
per service). Pages are drawn at random (fixed seed) across the whole directory.

    .venv/bin/python -m bench.bench_hsds_api [--services 10000] [--requests 300]
        [--per-page 50] [--seed 4] [--backends sqlite,postgresql] [--strict] [--compare REV]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from typing import Any

from sqlalchemy import event, text

from bench import common
from bench.bench_matching import build_directory

FLOOR_SQL = (
    "SELECT id, hsds_id, organization_id, name, description, active, min_age, max_age, "
    "updated_at FROM service WHERE active = :yes ORDER BY id LIMIT :n OFFSET :skip"
)


def statements(db: Any, fn: Any) -> int:
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(args[2])

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        fn()
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    return len(seen)


def one_backend(label: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    db = common.find("app.core.extensions:db", "app.extensions:db")
    env = dict(common.secrets_env(), DATABASE_URL=url, HAVEN_HSDS_API_RATE_PER_MINUTE="100000000")
    app = common.make_app(env)
    out: dict[str, Any] = {"broken": []}
    try:
        with app.app_context():
            t0 = time.perf_counter()
            built = build_directory(random.Random(args.seed), args.services, 50)
            print(f"[{label}] {built:,} services, built in {time.perf_counter() - t0:.1f} s",
                  flush=True)
            active = int(db.session.scalar(text("SELECT count(*) FROM service WHERE active = "
                                                + ("true" if "postgresql" in url else "1"))))
            pages = max(1, -(-active // args.per_page))
            rng = random.Random(args.seed + 2)
            wanted = [rng.randint(1, pages) for _ in range(args.requests)]
            client = app.test_client()

            def page(n: int, per_page: int = args.per_page) -> None:
                response = client.get(f"/hsds/services?per_page={per_page}&page={n}")
                if response.status_code != 200 or response.json is None:
                    out["broken"].append(f"{label}: page {n} answered {response.status_code}")
                elif n < pages and response.json["size"] != per_page:
                    out["broken"].append(f"{label}: page {n} held {response.json['size']}")
                db.session.remove()

            def floor(n: int) -> None:
                with db.engine.connect() as conn:
                    conn.execute(text("SELECT count(*) FROM service WHERE active = :yes"),
                                 {"yes": True}).scalar()
                    conn.execute(text(FLOOR_SQL), {"yes": True, "n": args.per_page,
                                                   "skip": (n - 1) * args.per_page}).all()

            for n in wanted[:20]:  # warm both
                page(n)
                floor(n)
            timings: dict[str, list[float]] = {"page": [], "floor": []}
            for n in wanted:  # interleaved, so a slow moment of the machine hits both
                for name, fn in (("page", page), ("floor", floor)):
                    start = time.perf_counter()
                    fn(n)
                    timings[name].append((time.perf_counter() - start) * 1000)
            out.update(timings)
            out["statements_5"] = statements(db, lambda: page(1, 5))
            out["statements_50"] = statements(db, lambda: page(1, 50))
            p = common.percentile
            print(f"[{label}] page p50 {p(timings['page'], 50):.2f} ms  "
                  f"p95 {p(timings['page'], 95):.2f} ms; floor p50 "
                  f"{p(timings['floor'], 50):.2f} ms  p95 {p(timings['floor'], 95):.2f} ms; "
                  f"SQL statements per page: {out['statements_5']} (5 services), "
                  f"{out['statements_50']} (50)", flush=True)
            db.session.remove()
    finally:
        with app.app_context():
            db.engine.dispose()
    return out


def measure(args: argparse.Namespace) -> common.Results:
    results = common.Results("hsds_api")
    for backend in common.backends(args):
        with common.scratch_databases() as scratch:
            got = one_backend(f"{backend} {args.services:,}", scratch.new(backend, "hsds"), args)
        results.broken += got["broken"]
        p = common.percentile
        at = f"per_page={args.per_page}, {args.services:,} services"
        page95 = results.figure(f"{backend}: GET /hsds/services p95, {at}", p(got["page"], 95),
                                "ms")
        results.figure(f"{backend}: GET /hsds/services p50, {at}", p(got["page"], 50), "ms")
        floor95 = results.figure(f"{backend}: bare query of the same rows p95 (floor)",
                                 p(got["floor"], 95), "ms")
        results.figure(f"{backend}: page p95 / floor p95", common.ratio(page95, floor95), "x")
        same = got["statements_5"] == got["statements_50"]
        results.judge(f"{backend}: no query per service (5 vs 50 per page)",
                      f"{got['statements_5']} vs {got['statements_50']}", same)
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--per-page", type=int, default=50)
    parser.add_argument("--seed", type=int, default=4)


def main(argv: list[str] | None = None) -> int:
    return common.run("bench.bench_hsds_api", sys.argv[1:] if argv is None else argv,
                      __doc__ or "", add_arguments, measure)


if __name__ == "__main__":
    sys.exit(main())
