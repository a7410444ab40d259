"""SMS webhook benchmark (DESIGN §8): ``POST /sms/inbound`` under load on gunicorn (2 sync
workers), on SQLite and on PostgreSQL, judged against the "one durable raw row per message"
floor measured in the same run on the same machine.

Budgets ("POST /sms/inbound under load, 2 gunicorn workers"):
  * follow-ups (numbers whose conversation is done texting again, the steady state of a
    hotline) reach at least 0.75 of the floor's throughput;
  * whole conversations (first contact, language, consent: a case with consent records,
    a sealed phone and audit events; needs, area, follow-ups) at least 0.40 of it;
  * whole WhatsApp conversations (the same script, ``From=whatsapp:+…``) and whole voice
    calls (``/voice/inbound``, then the step URL with pressed digits) at least 0.40 of it
    too, judged by the same floor (issue 18);
  * p99 latency under 100 ms for each.

The floor (``bench/sms_floor.py``) is Haven's own request cycle for the same URL (gate,
signature, form and phone checks, the SQLite writers' queue, commit, TwiML) whose hotline
only writes the MessageSid row with the raw DBAPI: the least work a correct webhook does.
It is measured before and after Haven's mixes; the mean of the two is the floor.
``--noop`` adds, as a reference, the same cycle doing no database work at all.

The load comes from a compiled generator (``bench/loadgen.c``, built with gcc in a temporary
folder at each run): the signed requests (Twilio's RequestValidator) are written to a file
before the clock starts; C threads send each exactly once, in order, over a fresh connection
each (gunicorn's sync workers close every connection), bounded in count and in time, and
time every answer. On the 2 cores the server also uses, it spends about 0.2 ms of CPU per
request; the Python threads it replaces spent about 1.3 ms (the server spends about 5).

    .venv/bin/python -m bench.bench_sms_inbound [--requests 2000] [--concurrency 6]
        [--seconds 30] [--phones 300]
        [--mix all|both|conversation|followup|whatsapp|voice] [--noop]
        [--backends sqlite,postgresql] [--strict] [--compare REV]

Prints requests/s, p50 and p99 per target, CPU milliseconds per request of the server
(gunicorn and its workers) and of the generator, the ratios to the floor and the verdicts.
127.0.0.1 only. PostgreSQL: a scratch database on HAVEN_BENCH_PG_URL (default
postgresql+psycopg://postgres@127.0.0.1:5432/postgres), dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import struct
import subprocess
import sys
import tempfile
import time
from typing import Any
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

from bench import common

TOKEN = "bench-" + secrets.token_hex(16)
ACCOUNT_SID = "AC" + "0" * 32
GUNICORN = os.path.join(common.BIN, "gunicorn")
BUDGET_RATIO = {"followup": 0.75, "conversation": 0.40, "whatsapp": 0.40, "voice": 0.40}
BUDGET_P99_MS = 100.0
MIX_NAMES = {"followup": "follow-ups", "conversation": "whole conversations",
             "whatsapp": "whole WhatsApp conversations", "voice": "whole voice calls"}
# The channel each mix is sent on (issue 18): WhatsApp on the same URL with whatsapp:
# senders; a voice call as /voice/inbound then its step URL with pressed digits.
MIX_CHANNEL = {"followup": "sms", "conversation": "sms", "whatsapp": "whatsapp",
               "voice": "voice"}

SCRIPTS = {
    # A whole conversation per number: first contact, language, consent (the case is
    # created: consent records, a sealed phone, audit events), needs, area, then follow-ups.
    "conversation": ["hi", "1", "yes", "1 2", "1", "any news?", "HELP", "any news?"],
    # Numbers that already finished (set up before the clock starts) texting again.
    "followup": ["any news?", "thank you", "HELP", "are you there?"],
    # The same conversation on WhatsApp.
    "whatsapp": ["hi", "1", "yes", "1 2", "1", "any news?", "HELP", "any news?"],
    # A call: ring (no digits), language, consent, needs, area, then more key presses.
    "voice": ["", "1", "1", "12", "1", "", "9", ""],
}
# Numbers (+1415555NNNN): each measurement texts from its own block.
BLOCKS = {"warmup": 9000, "conversation": 1000, "followup": 4000, "floor": 7000,
          "whatsapp": 2000, "voice": 3000}


# --- requests ---------------------------------------------------------------------------------


def signed_requests(port: int, count: int, phones: int, script: list[str],
                    first: int, channel: str = "sms") -> list[bytes]:
    """``count`` complete HTTP requests, step by step across ``phones`` numbers (every number
    sends its first message, then every number its second, ...), signed for this port."""
    validator = RequestValidator(TOKEN)
    out: list[bytes] = []
    step = 0
    calls = [f"CA{secrets.token_hex(16)}" for _ in range(phones)]
    while len(out) < count:
        for phone in range(phones):
            number = f"+1415555{(first + phone) % 10000:04d}"
            text = script[min(step, len(script) - 1)]
            path = "/sms/inbound"
            params: dict[str, str]
            if channel == "voice":
                params = {"CallSid": calls[phone], "AccountSid": ACCOUNT_SID, "From": number,
                          "To": "+15005550006", "CallStatus": "in-progress"}
                if step:
                    path = f"/voice/step?n={step}"
                    params["Digits"] = text
                else:
                    path = "/voice/inbound"
            else:
                prefix = "whatsapp:" if channel == "whatsapp" else ""
                params = {
                    "MessageSid": "SM" + secrets.token_hex(16),
                    "AccountSid": ACCOUNT_SID,
                    "From": prefix + number,
                    "To": prefix + "+15005550006",
                    "Body": text,
                    "NumMedia": "0",
                }
            url = f"http://127.0.0.1:{port}{path}"
            body = urlencode(params).encode()
            head = (
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(body)}\r\n"
                f"X-Twilio-Signature: {validator.compute_signature(url, params)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode()
            out.append(head + body)
            if len(out) >= count:
                break
        step += 1
    return out


def write_requests(path: str, requests: list[bytes]) -> None:
    """The generator's input: each request as a 4-byte big-endian length and its bytes."""
    with open(path, "wb") as fh:
        for request in requests:
            fh.write(struct.pack(">I", len(request)))
            fh.write(request)


def compile_loadgen(folder: str) -> str:
    binary = os.path.join(folder, "loadgen")
    source = os.path.join(common.ROOT, "bench", "loadgen.c")
    try:
        subprocess.run(["gcc", "-O2", "-pthread", "-o", binary, source], check=True,
                       capture_output=True, text=True)
    except FileNotFoundError:
        raise SystemExit("bench_sms_inbound: gcc is needed to build the load generator "
                         "(apt-get install gcc)") from None
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"bench_sms_inbound: building bench/loadgen.c failed:\n{exc.stderr}") \
            from None
    return binary


def drive(loadgen: str, folder: str, port: int, requests: list[bytes], concurrency: int,
          seconds: float) -> dict[str, Any]:
    path = os.path.join(folder, f"requests-{port}-{secrets.token_hex(3)}.bin")
    write_requests(path, requests)
    try:
        done = subprocess.run(
            [loadgen, "127.0.0.1", str(port), path, str(concurrency), str(seconds)],
            check=True, capture_output=True, text=True,
        )
    finally:
        os.unlink(path)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# --- servers ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(database_url: str, keys: dict[str, str]) -> dict[str, str]:
    env = common.child_env()
    env.update(keys)
    env.update({
        "HAVEN_ENV": "development",
        "DATABASE_URL": database_url,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "SMS_BACKEND": "console",
        "PUBLIC_BASE_URL": "",
    })
    return env


PREPARE = """\
from bench import common
db = common.find("app.core.extensions:db", "app.extensions:db")
models = common.find("app.models")
app = common.find("app:create_app")()
with app.app_context():
    common.migrate()
    db.session.add(models.Organization(name="Hotline NGO", kind="ngo"))
    for i in range(12):
        db.session.add(models.Area(name=f"Area {i:02d}"))
    db.session.commit()
"""


def prepare_database(env: dict[str, str]) -> None:
    """Migrate to head, add the hotline's NGO and an area list (in a child process in the
    tree under test, so this process keeps no connection to the database)."""
    done = subprocess.run([sys.executable, "-c", PREPARE], env=env, cwd=common.ROOT,
                          check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"preparing the database failed:\n{done.stderr[-3000:]}")


def serve(target: str, env: dict[str, str], log: str) -> tuple[subprocess.Popen[bytes], int]:
    """gunicorn with 2 sync workers on a free port; its messages go to the file ``log``."""
    port = free_port()
    with open(log, "ab") as errors:
        process = subprocess.Popen(
            [GUNICORN, "--workers", "2", "--worker-class", "sync", "--bind",
             f"127.0.0.1:{port}", "--log-level", "warning", "--timeout", "30",
             "--no-control-socket", target],
            env=env, cwd=common.TREE, stdout=subprocess.DEVNULL, stderr=errors,
        )
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait()
                with open(log, encoding="utf-8", errors="replace") as fh:
                    tail = fh.read()[-3000:]
                raise SystemExit(f"gunicorn did not start for {target}:\n{tail}") from None
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


def measure_target(target: str, env: dict[str, str], args: argparse.Namespace, mix: str,
                   block: str, loadgen: str, folder: str) -> dict[str, Any]:
    process, port = serve(target, env, os.path.join(folder, "gunicorn.log"))
    try:
        first = BLOCKS[block]
        if mix == "followup":
            # Untimed: every number goes through a whole conversation first.
            setup = drive(loadgen, folder, port, signed_requests(
                port, args.phones * len(SCRIPTS["conversation"]), args.phones,
                SCRIPTS["conversation"], first), args.concurrency, 600)
            if setup["errors"]:
                raise SystemExit(f"{target}: the follow-up set-up failed: {setup['errors']}")
        else:  # warm-up on other numbers
            drive(loadgen, folder, port, signed_requests(
                port, 200, 25, SCRIPTS["conversation"], BLOCKS["warmup"]), args.concurrency, 60)
        requests = signed_requests(port, args.requests, args.phones, SCRIPTS[mix], first,
                                   MIX_CHANNEL[mix])
        server_before, client_before = tree_cpu(process.pid), os.times()
        result = drive(loadgen, folder, port, requests, args.concurrency, args.seconds)
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
            process.wait()


def bracket(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """One figure from two runs of the same target: the mean of each measure."""
    out = {key: (before[key] + after[key]) / 2
           for key in ("rps", "p50", "p99", "mean", "server_ms", "client_ms")}
    out.update(ok=before["ok"] + after["ok"], errors={})
    return out


def line(name: str, r: dict[str, Any]) -> str:
    errors = f"  errors {r['errors']}" if r["errors"] else ""
    return (f"  {name:<34} {r['rps']:8.1f} req/s   p50 {r['p50']:6.1f} ms   "
            f"p99 {r['p99']:6.1f} ms   ({r['ok']} answered){errors}\n"
            f"    CPU per request: server {r['server_ms']:.2f} ms, "
            f"load generator {r['client_ms']:.2f} ms")


def measure(args: argparse.Namespace) -> common.Results:
    results = common.Results("sms_inbound")
    backends = common.backends(args)
    mixes = (list(SCRIPTS) if args.mix == "all"
             else ["conversation", "followup"] if args.mix == "both" else [args.mix])
    floors = ["row"] + (["noop"] if args.noop else [])
    print(f"POST /sms/inbound, gunicorn 2 sync workers, {args.requests} signed requests per "
          f"target from the compiled generator, {args.concurrency} connections, at most "
          f"{args.seconds:.0f} s per target", flush=True)
    with tempfile.TemporaryDirectory(prefix="haven-bench-sms-") as folder:
        loadgen = compile_loadgen(folder)
        for backend in backends:
            with common.scratch_databases() as scratch:
                env = server_env(scratch.new(backend, "sms"), common.secrets_env())
                prepare_database(env)
                floor_env = dict(env, PYTHONPATH=os.pathsep.join(
                    dict.fromkeys([common.TREE, os.path.join(common.ROOT, "bench")])))
                measured: dict[str, dict[str, Any]] = {}

                def floor(mode: str, floor_env: dict[str, str] = floor_env) -> dict[str, Any]:
                    return measure_target(
                        "sms_floor:app", dict(floor_env, HAVEN_BENCH_FLOOR=mode), args,
                        "conversation", "floor", loadgen, folder)

                # The floor before and after Haven's mixes: their mean is the figure, so a
                # slow or quick moment of a shared machine does not fall on one side only.
                for mode in floors:
                    measured[f"{mode} before"] = floor(mode)
                for mix in mixes:
                    measured[mix] = measure_target("app:create_app()", env, args, mix, mix,
                                                   loadgen, folder)
                measured["row after"] = floor("row")
                measured["row"] = bracket(measured["row before"], measured["row after"])
            report(results, backend, measured, mixes, floors)
    return results


def report(results: common.Results, backend: str, measured: dict[str, dict[str, Any]],
           mixes: list[str], floors: list[str]) -> None:
    print(f"{backend}:")
    floor = measured["row"]
    print(line("floor: one raw row, before", measured["row before"]))
    print(line("floor: one raw row, after", measured["row after"]))
    print(f"    the floor: {floor['rps']:.1f} req/s (the mean of the two)")
    results.figure(f"{backend}: floor (one raw row) throughput", floor["rps"], "req/s", "higher")
    results.figure(f"{backend}: floor p99", floor["p99"], "ms")
    if "noop" in floors:
        print(line("reference: no database work", measured["noop before"]))
        results.figure(f"{backend}: no-work reference throughput",
                       measured["noop before"]["rps"], "req/s", "higher")
    for mix in mixes:
        real = measured[mix]
        name = MIX_NAMES[mix]
        share = common.ratio(real["rps"], floor["rps"])
        print(line(f"Haven, {name}", real))
        print(f"    {share:.2f} of the floor's throughput (budget >= {BUDGET_RATIO[mix]})")
        results.figure(f"{backend}: {name} throughput", real["rps"], "req/s", "higher")
        results.figure(f"{backend}: {name} p50", real["p50"], "ms")
        results.figure(f"{backend}: {name} p99", real["p99"], "ms")
        results.figure(f"{backend}: {name} server CPU per request", real["server_ms"], "ms")
        results.figure(f"{backend}: {name} / floor", share, "", "higher")
        results.judge(f"{backend}: {name} >= {BUDGET_RATIO[mix]:.2f} of the floor",
                      f"{share:.2f}", share >= BUDGET_RATIO[mix])
        results.judge(f"{backend}: {name} p99 < {BUDGET_P99_MS:.0f} ms",
                      f"{real['p99']:.1f} ms", real["p99"] < BUDGET_P99_MS)
    for name, r in measured.items():
        if name == "row":  # the two floor runs are checked themselves
            continue
        if r["errors"]:
            results.broken.append(f"{backend}: {name}: answers other than 200: {r['errors']}")
        if r["ok"] == 0:
            results.broken.append(f"{backend}: {name}: no request answered")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--requests", type=int, default=2000,
                        help="measured requests per target (default 2000)")
    parser.add_argument("--concurrency", type=int, default=6,
                        help="connections the generator keeps busy (default 6)")
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="at most this long per measured target (default 30)")
    parser.add_argument("--phones", type=int, default=300,
                        help="numbers texting in each measurement (default 300)")
    parser.add_argument("--mix", choices=[*SCRIPTS, "both", "all"], default="all",
                        help="conversation, followup, whatsapp, voice, both (the two SMS "
                             "mixes) or all (default)")
    parser.add_argument("--noop", action="store_true",
                        help="also measure the request cycle with no database work")


def main(argv: list[str] | None = None) -> int:
    return common.run("bench.bench_sms_inbound", sys.argv[1:] if argv is None else argv,
                      __doc__ or "", add_arguments, measure)


if __name__ == "__main__":
    sys.exit(main())
