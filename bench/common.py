"""What every benchmark shares (DESIGN §8): the tree under test, finding Haven's functions in
it, scratch databases, verdicts, and the before/after comparison against a git revision.

**The tree under test.** A benchmark measures the Haven of its own checkout, or, when
``HAVEN_BENCH_TREE`` names another checkout (the comparison sets it), that one: the folder is
put first on ``sys.path`` when this module is imported, before anything imports ``app`` or
``config``. The benchmark code itself (the ``bench`` package) always comes from this checkout,
so the same measurement runs against both trees.

**Stable interfaces first.** Benchmarks drive Haven through ``create_app``, HTTP, the CLI
(DESIGN §7) and the schema. Where a function must be called in-process, ``find`` tries its
places in turn, the feature-package layout first and the flat one after
(``find("app.directory.matching:match", "app.matching:match")``), so one script measures a
tree from before a restructuring and one from after it.

**Verdicts.** Each budget is a ratio to a floor measured in the same run; a benchmark prints
its figures, its floors, the ratios and one verdict per budget (``within`` / ``OVER``). It
exits 0 when a budget is over unless ``--strict`` is given (``make bench`` prints; it does not
fail the build). A broken measurement (errors from the server, wrong results) is always a
failure.

**Before/after.** ``--compare REV`` (``make bench BENCH_COMPARE=REV``): the tree of REV is
written to a temporary folder (``git archive``; its catalogs compiled), the benchmark runs
once against it and once against the working tree, one after the other in the same run, and
a table shows each figure before, after, and the change.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import importlib
import io
import json
import os
import secrets
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import create_engine, text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TREE = os.path.abspath(os.environ.get("HAVEN_BENCH_TREE") or ROOT)
if TREE != ROOT:
    if "app" in sys.modules:  # pragma: no cover - a mistake in a benchmark's imports
        raise RuntimeError("bench.common must be imported before app when HAVEN_BENCH_TREE is set")
    sys.path[:] = [TREE, *(p for p in sys.path if os.path.abspath(p or ".") != TREE)]

PG_SERVER = os.environ.get(
    "HAVEN_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
BIN = os.path.dirname(sys.executable)


# --- finding Haven's code in the tree under test ------------------------------------------


def _missing(exc: ModuleNotFoundError, module_name: str) -> bool:
    """True when the module itself (or a package on its path) does not exist, as opposed
    to an import error inside a module that does."""
    name = exc.name or ""
    return bool(name) and (module_name == name or module_name.startswith(name + "."))


def find(*candidates: str) -> Any:
    """The first of ``"module:attribute"`` (or ``"module"``) that exists in the tree under
    test. List the new place first and the old one after. Raises ``LookupError`` naming
    every place tried when none exists; an error inside an existing module is raised as is."""
    for spec in candidates:
        module_name, _, attribute = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if _missing(exc, module_name):
                continue
            raise
        if not attribute:
            return module
        if hasattr(module, attribute):
            return getattr(module, attribute)
    raise LookupError(f"none of {', '.join(candidates)} exists in {TREE}")


def find_module_with(attributes: Sequence[str], *modules: str) -> Any:
    """The first of ``modules`` that exists and has every one of ``attributes``."""
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if _missing(exc, module_name):
                continue
            raise
        if all(hasattr(module, a) for a in attributes):
            return module
    raise LookupError(
        f"no module among {', '.join(modules)} has {', '.join(attributes)} (in {TREE})"
    )


def secrets_env() -> dict[str, str]:
    """Fresh keys for one benchmark database (nothing secret is kept)."""
    return {
        "SECRET_KEY": secrets.token_urlsafe(48),
        "HAVEN_DATA_KEYS": _fernet_key(),
        "HAVEN_INDEX_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
    }


def _fernet_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def make_app(env: dict[str, str]) -> Any:
    """``create_app`` of the tree under test, in testing mode, on ``env`` (keys, database)."""
    create_app = find("app:create_app")
    testing = find("config:TestingConfig")
    return create_app(testing(env))


def migrate() -> None:
    """Migrate the current app's database to head (Alembic's progress lines go nowhere)."""
    upgrade = find("flask_migrate:upgrade")
    with contextlib.redirect_stderr(io.StringIO()):
        upgrade(revision="heads")


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child process that must see the same tree (PYTHONPATH: the
    tree under test, then this checkout for the ``bench`` package)."""
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([TREE, ROOT]))
    if TREE != ROOT:
        env["HAVEN_BENCH_TREE"] = TREE
    return env


# --- numbers --------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank percentile (p in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "load average unknown"
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


# --- databases ------------------------------------------------------------------------------


def _admin() -> Any:
    return create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")


def pg_url(name: str) -> str:
    return PG_SERVER.rsplit("/", 1)[0] + "/" + name


def pg_create(template: str | None = None) -> str:
    """A new scratch database (a copy of ``template`` when given); returns its name."""
    name = f"haven_bench_{uuid.uuid4().hex[:10]}"
    admin = _admin()
    try:
        with admin.connect() as conn:
            copy = f' TEMPLATE "{template}"' if template else ""
            conn.execute(text(f'CREATE DATABASE "{name}"{copy}'))
    finally:
        admin.dispose()
    return name


def pg_drop(*names: str) -> None:
    admin = _admin()
    try:
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextmanager
def scratch_databases() -> Iterator[Any]:
    """Hands out database URLs (``new(backend, label)``, ``copy(url)``) and removes every one
    at the end: SQLite files in a temporary folder, PostgreSQL databases on
    ``HAVEN_BENCH_PG_URL`` (dropped even after an error)."""
    made: list[str] = []
    with tempfile.TemporaryDirectory(prefix="haven-bench-") as folder:

        class Scratch:
            def new(self, backend: str, label: str = "db") -> str:
                if backend == "sqlite":
                    name = f"{label}-{uuid.uuid4().hex[:6]}.sqlite"
                    return "sqlite:///" + os.path.join(folder, name)
                name = pg_create()
                made.append(name)
                return pg_url(name)

            def copy(self, url: str) -> str:
                """The same data in a new database (nothing may be connected to ``url``)."""
                if url.startswith("sqlite"):
                    source = url.split("///", 1)[1]
                    target = source.replace(".sqlite", "-copy.sqlite")
                    for suffix in ("", "-wal"):
                        if os.path.exists(source + suffix):
                            with open(source + suffix, "rb") as src, \
                                    open(target + suffix, "wb") as dst:
                                while chunk := src.read(1 << 20):
                                    dst.write(chunk)
                    return "sqlite:///" + target
                name = pg_create(template=url.rsplit("/", 1)[1])
                made.append(name)
                return pg_url(name)

        try:
            yield Scratch()
        finally:
            if made:
                pg_drop(*made)


# --- results and verdicts -------------------------------------------------------------------


@dataclass
class Figure:
    name: str
    value: float
    unit: str = ""
    better: str = "lower"  # or "higher": which way is an improvement


@dataclass
class Verdict:
    budget: str
    figure: str
    ok: bool


@dataclass
class Results:
    bench: str
    figures: list[Figure] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)  # failed measurements (always fatal)

    def figure(self, name: str, value: float, unit: str = "", better: str = "lower") -> float:
        self.figures.append(Figure(name, value, unit, better))
        return value

    def judge(self, budget: str, figure: str, ok: bool) -> bool:
        self.verdicts.append(Verdict(budget, figure, ok))
        return ok

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Results:
        raw = json.loads(text)
        return cls(
            bench=raw["bench"],
            figures=[Figure(**f) for f in raw["figures"]],
            verdicts=[Verdict(**v) for v in raw["verdicts"]],
            broken=list(raw["broken"]),
        )


def verdict_word(ok: bool) -> str:
    return "within" if ok else "OVER"


def print_verdicts(results: Results, heading: str = "") -> None:
    print(f"-- verdicts{' (' + heading + ')' if heading else ''}, DESIGN §8:")
    width = max((len(v.budget) for v in results.verdicts), default=0)
    for v in results.verdicts:
        print(f"  {v.budget:<{width}}  {v.figure:>14}  {verdict_word(v.ok)}")
    for problem in results.broken:
        print(f"  BROKEN: {problem}")


def exit_code(results: Results, strict: bool) -> int:
    if results.broken:
        return 1
    if strict and not all(v.ok for v in results.verdicts):
        return 1
    return 0


def change(before: float, after: float) -> str:
    if before != before or after != after or before == 0:  # NaN or nothing to compare
        return "-"
    return f"{(after - before) / abs(before) * 100:+.1f} %"


def _number(value: float, unit: str) -> str:
    if value != value:
        return "-"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()


def comparison_table(before: Results, after: Results, before_label: str,
                     after_label: str) -> list[str]:
    """One line per figure: before, after, the change and whether it is better or worse."""
    after_by = {f.name: f for f in after.figures}
    rows = [("figure", before_label, after_label, "change", "")]
    for f in before.figures:
        other = after_by.get(f.name)
        if other is None:
            rows.append((f.name, _number(f.value, f.unit), "-", "-", ""))
            continue
        moved = other.value - f.value
        direction = ""
        noticeable = f.value and abs(moved) >= 0.01 * abs(f.value)  # 1 %: "same" below
        if noticeable and f.value == f.value and other.value == other.value:
            improved = moved < 0 if f.better == "lower" else moved > 0
            direction = "better" if improved else "worse"
        rows.append((f.name, _number(f.value, f.unit), _number(other.value, other.unit),
                     change(f.value, other.value), direction))
    names = {f.name for f in before.figures}
    rows.extend((f.name, "-", _number(f.value, f.unit), "-", "")
                for f in after.figures if f.name not in names)
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return [
        "  ".join(
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(r)
        ).rstrip()
        for r in rows
    ]


# --- command line shared by every benchmark ---------------------------------------------------


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backends", default="sqlite,postgresql",
                        help="databases to measure on, comma-separated (default both)")
    parser.add_argument("--no-postgresql", action="store_true",
                        help="SQLite only (same as --backends sqlite)")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when a budget is over (default: print the verdicts only)")
    parser.add_argument("--compare", metavar="REV", default=None,
                        help="also measure the tree of this git revision, in the same run, "
                        "and print each figure before and after")
    parser.add_argument("--json-out", default=None, help=argparse.SUPPRESS)


def backends(args: argparse.Namespace) -> list[str]:
    chosen = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(chosen) - {"sqlite", "postgresql"}
    if unknown or not chosen:
        raise SystemExit(f"--backends: sqlite and/or postgresql, not {args.backends!r}")
    return [b for b in chosen if not (args.no_postgresql and b == "postgresql")]


def forwarded(argv: Sequence[str]) -> list[str]:
    """The command line without --compare REV, --strict and --json-out (for the children
    of a comparison)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--compare", "--json-out"):
            skip = True
            continue
        if arg.startswith(("--compare=", "--json-out=")) or arg == "--strict":
            continue
        out.append(arg)
    return out


def run(module: str, argv: Sequence[str], describe: str,
        add_arguments: Callable[[argparse.ArgumentParser], None],
        measure: Callable[[argparse.Namespace], Results]) -> int:
    """The main of a benchmark: parse, then measure this tree, or compare two."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {module}", description=describe,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_arguments(parser)
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.compare:
        return compare(module, args.compare, forwarded(argv), args.strict)
    print(f"{module}: {tree_label()}; {load_average()}")
    started = time.monotonic()
    results = measure(args)
    print(f"{module}: done in {time.monotonic() - started:.0f} s; {load_average()}")
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as fh:
            fh.write(results.to_json())
    print_verdicts(results)
    return exit_code(results, args.strict)


def _git(*args: str, stdout: Any = subprocess.PIPE) -> subprocess.CompletedProcess[Any]:
    return subprocess.run(["git", "-C", ROOT, *args], check=True, stdout=stdout,
                          stderr=subprocess.PIPE)


def tree_label() -> str:
    if TREE != ROOT:
        return f"tree under test {TREE}"
    try:
        head = _git("rev-parse", "--short=10", "HEAD").stdout.decode().strip()
        dirty = _git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "working tree"
    return f"working tree at {head}{' with uncommitted changes' if dirty else ''}"


@contextmanager
def revision_tree(rev: str) -> Iterator[tuple[str, str]]:
    """The files of ``rev`` in a temporary folder (``git archive``: nothing is registered in
    the repository, nothing is left behind even when interrupted), with compiled catalogs.
    Yields (folder, label)."""
    try:
        sha = _git("rev-parse", "--verify", f"{rev}^{{commit}}").stdout.decode().strip()
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"--compare: {rev!r} is not a commit of this repository") from exc
    with tempfile.TemporaryDirectory(prefix="haven-bench-rev-") as folder:
        archive = _git("archive", "--format=tar", sha).stdout
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
            tar.extractall(folder, filter="data")
        catalogs = os.path.join(folder, "translations")
        if os.path.isdir(catalogs):
            subprocess.run([os.path.join(BIN, "pybabel"), "-q", "compile", "-d", catalogs,
                            "-D", "messages"], check=False, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        yield folder, f"{rev} ({sha[:10]})"


def compare(module: str, rev: str, argv: list[str], strict: bool) -> int:
    print(f"{module}: before = {rev}, after = {tree_label()}; {load_average()}")
    with revision_tree(rev) as (folder, before_label), \
            tempfile.TemporaryDirectory(prefix="haven-bench-out-") as out:
        outcomes: dict[str, Results] = {}
        for key, tree in (("before", folder), ("after", None)):
            path = os.path.join(out, f"{key}.json")
            env = dict(os.environ)
            env.pop("HAVEN_BENCH_TREE", None)
            if tree is not None:
                env["HAVEN_BENCH_TREE"] = tree
            print(f"\n==== {key}: {before_label if tree else 'working tree'}", flush=True)
            done = subprocess.run([sys.executable, "-m", module, *argv, "--json-out", path],
                                  cwd=ROOT, env=env, check=False)
            if not os.path.exists(path):
                print(f"{module}: the {key} run failed (exit {done.returncode})")
                return 1
            with open(path, encoding="utf-8") as fh:
                outcomes[key] = Results.from_json(fh.read())
    before, after = outcomes["before"], outcomes["after"]
    print(f"\n==== {module}: before and after, measured in this run ({load_average()})")
    for line in comparison_table(before, after, f"before {before_label}", "after (working tree)"):
        print("  " + line)
    print()
    print_verdicts(before, f"before, {before_label}")
    print_verdicts(after, "after, working tree")
    return exit_code(after, strict) or (1 if before.broken else 0)
