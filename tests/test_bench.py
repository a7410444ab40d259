"""The benchmarks' own machinery (DESIGN §8, bench/): what they compare against must be
right, or their verdicts mean nothing. The floors (the retention bench's raw SQL erasure,
the webhook's one raw row), the compiled load generator, the soak's checks, the verdicts and
the before/after comparison; then each benchmark run end to end on a tiny workload."""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from sqlalchemy import func, select

from app.core.crypto import blind_index
from app.core.extensions import db
from app.models import Case, Consent, DataKey, HotlineSession, Message, Need, utcnow
from app.models.referrals import Referral, Release
from app.sms import hotline
from bench import bench_case_search, bench_matching, bench_retention, common, sms_floor, soak
from bench.bench_sms_inbound import compile_loadgen, drive
from tests import factories
from tests.conftest import BACKEND, PG_SERVER
from tests.sms_support import ACCOUNT_SID, AUTH_TOKEN, inbound_params, post_signed

ROOT = Path(__file__).resolve().parent.parent


# --- finding Haven's code in a tree whose layout moves ---------------------------------------


def test_find_takes_the_first_place_that_exists() -> None:
    from app.directory import matching

    assert common.find("app.directory.matching_not_there:match", "app.directory.matching:match") \
        is matching.match
    assert common.find("app.nowhere", "app.directory.matching") is matching
    with pytest.raises(LookupError, match=r"app\.nowhere:match"):
        common.find("app.nowhere:match", "app.directory.matching:no_such_function")


def test_find_does_not_hide_an_error_inside_a_module_that_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "bench_broken_module.py").write_text("import no_such_dependency_here\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_here"):
        common.find("bench_broken_module:x", "app.directory.matching:match")


# --- verdicts and the comparison ---------------------------------------------------------------


def test_over_budget_fails_only_with_strict_and_a_broken_measurement_always() -> None:
    results = common.Results("x")
    results.judge("ratio >= 0.75", "0.60", False)
    assert common.exit_code(results, strict=False) == 0
    assert common.exit_code(results, strict=True) == 1
    results.broken.append("answers other than 200")
    assert common.exit_code(results, strict=False) == 1
    assert common.Results.from_json(results.to_json()) == results


def test_the_comparison_shows_each_figure_before_after_and_which_way_it_moved() -> None:
    before, after = common.Results("x"), common.Results("x")
    before.figure("throughput", 100.0, "req/s", "higher")
    after.figure("throughput", 80.0, "req/s", "higher")
    before.figure("p99", 50.0, "ms")
    after.figure("p99", 40.0, "ms")
    before.figure("memory", 104.0, "MB")
    after.figure("memory", 103.95, "MB")
    before.figure("only before", 1.0)
    after.figure("only after", 2.0)
    lines = common.comparison_table(before, after, "before", "after")
    row = {line.split("  ")[0]: line for line in lines}
    assert "-20.0 %" in row["throughput"] and row["throughput"].endswith("worse")
    assert "-20.0 %" in row["p99"] and row["p99"].endswith("better")
    assert not row["memory"].endswith(("better", "worse"))  # under 1 %: the same
    assert "only before" in row and "only after" in row


def test_a_comparison_forwards_the_measurement_options_only() -> None:
    argv = ["--sizes", "10,20", "--compare", "HEAD~1", "--strict", "--json-out=x",
            "--no-postgresql"]
    assert common.forwarded(argv) == ["--sizes", "10,20", "--no-postgresql"]


def test_the_tree_of_a_revision_is_written_to_a_folder_and_removed_after() -> None:
    with common.revision_tree("HEAD") as (folder, label):
        assert (Path(folder) / "app" / "__init__.py").exists()
        assert label.startswith("HEAD (")
        kept = folder
    assert not os.path.exists(kept)
    with (
        pytest.raises(SystemExit, match="not a commit"),
        common.revision_tree("no-such-revision-anywhere"),
    ):
        pass


# --- the retention floor ------------------------------------------------------------------------


def _due_case(at: Any) -> Case:
    case = factories.make_case(at=at - timedelta(days=200))
    service = factories.make_service(category="legal")
    referral = factories.make_referral(case, service)
    db.session.add(Message(direction="out", audience="survivor", template_key="survivor.update",
                           language="en", status="delivered", case_id=case.id,
                           referral_id=referral.id))
    db.session.add(HotlineSession(phone_index=case.phone_index, step="done", case_id=case.id,
                                  language="en", created_at=at, last_message_at=at))
    case.status = "closed"
    case.closed_at = at - timedelta(days=100)
    case.retention_due_at = at - timedelta(days=1)
    db.session.flush()
    return case


def test_the_retention_floor_deletes_the_due_cases_with_their_rows_and_keys(app: Any) -> None:
    now = utcnow()
    due = _due_case(now)
    due_id, due_key = due.id, due.data_key_id
    open_case = factories.make_case(phone="+14155550124")
    not_yet = factories.make_case(phone="+14155550125", status="closed",
                                  closed_at=now, retention_due_at=now + timedelta(days=89))
    kept = {open_case.id, not_yet.id}
    kept_keys = {open_case.data_key_id, not_yet.data_key_id}
    db.session.commit()

    assert bench_retention.floor_erase(db.engine, now) == 1
    db.session.expire_all()

    assert db.session.get(Case, due_id) is None
    assert db.session.get(DataKey, due_key) is None
    for model, column in ((Consent, Consent.case_id), (Need, Need.case_id),
                          (Referral, Referral.case_id), (Release, Release.case_id),
                          (Message, Message.case_id), (HotlineSession, HotlineSession.case_id)):
        assert db.session.scalar(select(func.count()).select_from(model)
                                 .where(column == due_id)) == 0, model.__name__
    assert set(db.session.scalars(select(Case.id))) == kept
    assert kept_keys <= set(db.session.scalars(select(DataKey.id)))
    assert db.session.scalar(select(func.count()).select_from(Consent)
                             .where(Consent.case_id.in_(kept))) > 0


# --- the webhook floor and the load generator --------------------------------------------------


def test_the_webhook_floor_replaces_the_hotline_in_the_real_view(
    app_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = app_factory(TWILIO_AUTH_TOKEN=AUTH_TOKEN, TWILIO_ACCOUNT_SID=ACCOUNT_SID)
    client = app.test_client()
    monkeypatch.setattr(hotline, "handle_inbound", hotline.handle_inbound)  # restored after
    monkeypatch.setenv("HAVEN_INDEX_KEY", app.config["HAVEN_INDEX_KEY"])
    where = sms_floor.replace_hotline(app, sms_floor.write_row)
    assert where.endswith("handle_inbound")
    sid = "SM" + "ab" * 16
    for _ in range(2):  # a Twilio retry: still one row
        answer = post_signed(client, "/sms/inbound", inbound_params("+14155550123", "hi", sid))
        assert answer.status_code == 200
    with app.app_context():
        rows = db.session.execute(select(Message.direction, Message.counterpart_index)
                                  .where(Message.twilio_sid == sid)).all()
        assert rows == [("in", blind_index("+14155550123"))]
        assert db.session.scalar(select(func.count()).select_from(HotlineSession)) == 0


class _Recorder(BaseHTTPRequestHandler):
    seen: list[str] = []
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        number = parse_qs(body.decode())["n"][0]
        with self.lock:
            self.seen.append(number)
        status = 500 if number.endswith("7") else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[int]:
    _Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_the_compiled_generator_sends_every_request_once_and_counts_the_answers(
    tmp_path: Path, recorder: int
) -> None:
    loadgen = compile_loadgen(str(tmp_path))
    requests = []
    for n in range(60):
        body = f"n={n}".encode()
        requests.append(b"POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                        b"Content-Type: application/x-www-form-urlencoded\r\n"
                        + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    result = drive(loadgen, str(tmp_path), recorder, requests, 4, 60)
    assert sorted(_Recorder.seen, key=int) == [str(n) for n in range(60)]
    assert result["ok"] == 54 and result["errors"] == {"500": 6}
    assert result["sent"] == 60 and 0 < result["p50"] <= result["p99"]

    _Recorder.seen = []
    result = drive(loadgen, str(tmp_path), recorder, requests[:10], 1, 60)
    assert _Recorder.seen == [str(n) for n in range(10)]  # one connection: in file order


def test_the_generator_reads_length_prefixed_requests(tmp_path: Path) -> None:
    path = tmp_path / "requests.bin"
    from bench.bench_sms_inbound import write_requests

    write_requests(str(path), [b"abc", b"de"])
    assert path.read_bytes() == struct.pack(">I", 3) + b"abc" + struct.pack(">I", 2) + b"de"


# --- the soak's checks --------------------------------------------------------------------------


def test_a_message_sent_twice_or_not_at_all_fails_the_soak() -> None:
    messages = [(1, "delivered", "SMa", False), (2, "delivered", "SMb", False),
                (3, "cancelled", None, True)]
    assert soak.check_sends(["SMa", "SMb"], messages).ok
    twice = soak.check_sends(["SMa", "SMx", "SMb"], messages)  # a resend replaced SMx by SMa
    assert not twice.ok and twice.sent_unrecorded == ["SMx"] and twice.sent_once == 2
    unsent = soak.check_sends(["SMa"], [*messages[:2], (4, "queued", None, True)])
    assert unsent.marked_not_sent == [2] and unsent.unsent == [4] and not unsent.ok
    waiting = soak.check_sends(["SMa", "SMb"], [*messages, (5, "queued", None, False)])
    assert waiting.ok  # not due yet (safe hours, backoff): not a failure


def test_an_overbooked_shelter_is_caught_in_a_snapshot() -> None:
    assert soak.bed_violations([(1, 3, 1, 2), (2, 2, 0, 0), (3, None, None, 0)]) == []  # type: ignore[list-item]
    assert soak.bed_violations([(1, 3, 2, 2), (2, 2, -1, 0)]) == [
        "shelter #1: 2 free + 2 held of 3", "shelter #2: -1 free + 0 held of 2"]


def test_the_soak_reads_5xx_from_gunicorns_access_log(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text('127.0.0.1 "POST /sms/inbound" 200 143 0.01s\n'
                   '127.0.0.1 "GET /cases/3" 502 0 0.2s\n'
                   '[2026-12-02 18:00:00 +0000] [1] [INFO] Booting worker\n')
    assert soak.access_log_5xx([str(log)]) == (2, 1)


def test_the_soak_reads_errors_from_the_servers_and_workers_logs(tmp_path: Path) -> None:
    (tmp_path / "web0.error.log").write_text(
        "[2026-12-02 18:31:40 +0000] [1] [INFO] Booting worker with pid: 2\n"
        "2026-12-02 18:31:41,459 ERROR [81eb] app: unhandled OperationalError at x.py:117 on "
        "sms.inbound\n")
    (tmp_path / "sms0.log").write_text("Traceback (most recent call last):\n  File \"x\"\n"
                                       "KeyError: 'x'\nsms worker: 3 sent\n")
    (tmp_path / "web0.access.log").write_text('127.0.0.1 "GET /ERROR " 200 1 0.1s\n')
    assert soak.logged_errors(str(tmp_path)) == [
        "sms0.log: KeyError: 'x'",
        "web0.error.log: 2026-12-02 18:31:41,459 ERROR [81eb] app: unhandled OperationalError "
        "at x.py:117 on sms.inbound",
    ]


def test_the_soak_finds_the_hidden_inputs_of_a_form() -> None:
    page = ('<form><input id="csrf_token" name="csrf_token" type="hidden" value="t1">'
            '<input type="hidden" name="services" value="3"><input type="hidden" '
            'name="services" value="4"><input name="days_2" type="text" value="30"></form>')
    assert soak.hidden_inputs(page) == {"csrf_token": ["t1"], "services": ["3", "4"]}


# --- each benchmark end to end on a tiny workload ---------------------------------------------


@pytest.fixture
def bench_backend(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(common, "PG_SERVER", PG_SERVER)
    monkeypatch.setenv("HAVEN_BENCH_PG_URL", PG_SERVER)
    return BACKEND


def test_the_matching_bench_judges_both_budgets(bench_backend: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(services=150, large=300, areas=20, cases=12, large_cases=6,
                              naive=3, seed=4,
                              backends=bench_backend, no_postgresql=False, plans=True)
    results = bench_matching.measure(args)
    budgets = [v.budget for v in results.verdicts]
    assert budgets == [f"{bench_backend}: match >= 40x faster than naive, 150 services",
                       f"{bench_backend}: p95 at 300 <= 3x p95 at 150"]
    assert not results.broken
    assert "pre-filter" in capsys.readouterr().out


def test_the_case_search_bench_checks_its_answers_and_judges_against_the_floor(
    bench_backend: str,
) -> None:
    args = argparse.Namespace(cases=60, queries=10, seed=7, backends=bench_backend,
                              no_postgresql=False)
    results = bench_case_search.measure(args)
    assert not results.broken
    names = {f.name for f in results.figures}
    assert f"{bench_backend}: floor p95 (nothing decrypted), 60 open cases (floor)" in names
    assert [v.budget for v in results.verdicts] == [
        f"{bench_backend}: alias search p95 < 500 ms, 60 open cases"]


def test_the_case_search_benchs_queries_find_what_they_should(app: Any) -> None:
    import random

    aliases = ["María García", "Amal Haddad"]
    asked = bench_case_search.queries(random.Random(1), aliases, 10)
    assert "MARIA GARCIA" in asked or "AMAL HADDAD" in asked
    assert any(q in bench_case_search.MISSES for q in asked)


def test_the_retention_bench_runs_haven_and_the_floor_on_the_same_data(
    bench_backend: str,
) -> None:
    args = argparse.Namespace(sizes="20,40", backends=bench_backend, no_postgresql=False,
                              tracemalloc=False)
    results = bench_retention.measure(args)
    names = {f.name for f in results.figures}
    assert f"{bench_backend}: floor (raw SQL delete), 40 cases" in names
    assert [v.budget.split(":")[1].split(",")[0].strip() for v in results.verdicts] == [
        "run <= 3x the floor", "2x the cases <= 2.2x the time",
        "memory flat (peak 40 <= 1.25x peak 20)"]


def test_the_sms_bench_measures_the_floor_and_every_mix(bench_backend: str,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.bench_sms_inbound", "--requests", "40", "--phones", "5",
         "--seconds", "20", "--concurrency", "2", "--backends", bench_backend,
         "--json-out", str(out)],
        cwd=ROOT, env=dict(os.environ, HAVEN_BENCH_PG_URL=PG_SERVER), capture_output=True,
        text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = common.Results.from_json(out.read_text())
    assert not results.broken
    assert [v.budget for v in results.verdicts] == [
        f"{bench_backend}: whole conversations >= 0.40 of the floor",
        f"{bench_backend}: whole conversations p99 < 100 ms",
        f"{bench_backend}: follow-ups >= 0.75 of the floor",
        f"{bench_backend}: follow-ups p99 < 100 ms",
        f"{bench_backend}: whole WhatsApp conversations >= 0.40 of the floor",
        f"{bench_backend}: whole WhatsApp conversations p99 < 100 ms",
        f"{bench_backend}: whole voice calls >= 0.40 of the floor",
        f"{bench_backend}: whole voice calls p99 < 100 ms",
    ]
    figures = {f.name: f.value for f in results.figures}
    assert figures[f"{bench_backend}: floor (one raw row) throughput"] > 0
    assert json.loads(out.read_text())["bench"] == "sms_inbound"


def test_a_failing_soak_thread_breaks_the_run_instead_of_lightening_it() -> None:
    tally = soak.Tally()

    def provider() -> None:
        raise ConnectionError("database gone")

    tally.guarded(provider)()
    assert tally.driver_errors == ["provider: ConnectionError: database gone"]


def test_the_hsds_api_bench_measures_the_page_and_its_floor(bench_backend: str) -> None:
    from bench import bench_hsds_api

    args = argparse.Namespace(services=120, requests=6, per_page=10, seed=4,
                              backends=bench_backend, no_postgresql=False)
    results = bench_hsds_api.measure(args)
    assert not results.broken
    names = [f.name for f in results.figures]
    assert f"{bench_backend}: page p95 / floor p95" in names
    [verdict] = results.verdicts
    assert verdict.ok, verdict.figure  # the same statements for 5 and 10 services a page
