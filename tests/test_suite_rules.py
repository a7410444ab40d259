"""The suite's own rules (tests/conftest.py): a skipped or xfailed test fails, and a test
marked ``postgres_only`` is deselected on SQLite (never collected as skipped)."""

from __future__ import annotations

from typing import Any

import pytest
from _pytest.reports import TestReport

from tests import conftest


def _report(outcome: str, **extra: Any) -> TestReport:
    longrepr = None if outcome == "passed" else ("test_x.py", 1, "Skipped: why not")
    report = TestReport(
        nodeid="test_x.py::test_x",
        location=("test_x.py", 0, "test_x"),
        keywords={},
        outcome=outcome,  # type: ignore[arg-type]
        longrepr=longrepr,
        when="call",
    )
    for name, value in extra.items():
        setattr(report, name, value)
    return report


def _through_the_hook(report: TestReport) -> TestReport:
    hook = conftest.pytest_runtest_makereport(None, None)  # type: ignore[arg-type]
    next(hook)
    with pytest.raises(StopIteration) as done:
        hook.send(report)
    result: TestReport = done.value.value
    return result


def test_a_skipped_test_fails() -> None:
    report = _through_the_hook(_report("skipped"))
    assert report.failed
    assert "must not skip" in str(report.longrepr) and "why not" in str(report.longrepr)


def test_an_xfailed_test_fails() -> None:
    report = _through_the_hook(_report("skipped", wasxfail="known bug"))
    assert report.failed and not hasattr(report, "wasxfail")


def test_an_xpassed_test_fails() -> None:
    report = _through_the_hook(_report("passed", wasxfail="known bug"))
    assert report.failed


def test_a_passing_test_passes() -> None:
    assert _through_the_hook(_report("passed")).passed


class _Item:
    def __init__(self, name: str, *markers: str) -> None:
        self.name = name
        self.markers = markers

    def get_closest_marker(self, name: str) -> Any:
        return name if name in self.markers else None


class _Config:
    def __init__(self) -> None:
        self.deselected: list[Any] = []
        self.hook = self

    def pytest_deselected(self, items: list[Any]) -> None:
        self.deselected.extend(items)


@pytest.mark.parametrize(
    ("backend", "kept", "deselected"),
    [("sqlite", ["both", "plain"], ["pg"]), ("postgresql", ["both", "pg", "plain"], [])],
)
def test_postgres_only_tests_are_deselected_on_sqlite(
    monkeypatch: pytest.MonkeyPatch, backend: str, kept: list[str], deselected: list[str]
) -> None:
    monkeypatch.setattr(conftest, "BACKEND", backend)
    items: list[Any] = [
        _Item("both", "both_databases"),
        _Item("pg", "postgres_only", "both_databases"),
        _Item("plain"),
    ]
    config = _Config()
    conftest.pytest_collection_modifyitems(config, items)  # type: ignore[arg-type]
    assert [i.name for i in items] == kept
    assert [i.name for i in config.deselected] == deselected
