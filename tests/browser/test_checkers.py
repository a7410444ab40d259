"""The browser checks can fail: each one is shown a Haven page broken on purpose (in the
browser only, nothing on the server changes) and must notice."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.support import blocking, layout_shift, run_axe, small_targets

pytestmark = pytest.mark.browser


def test_axe_reports_serious_and_critical_violations(contexts: Any) -> None:
    page = contexts.new().new_page()
    page.goto("/auth/login")
    assert blocking(run_axe(page)) == []
    page.evaluate(
        """() => {
            document.querySelector('main').appendChild(document.createElement('input'));
            document.querySelector('h1').style.color = '#eeeeee';
        }"""
    )
    found = {v["id"]: v["impact"] for v in blocking(run_axe(page))}
    assert found.get("label") == "critical"
    assert found.get("color-contrast") == "serious"


def test_small_tap_targets_are_found(contexts: Any) -> None:
    page = contexts.new().new_page()
    page.goto("/auth/login")
    assert small_targets(page) == []
    page.evaluate(
        """() => {
            const a = document.createElement('a');
            a.href = '/x'; a.textContent = 'x';
            const p = document.createElement('p');
            p.appendChild(a);
            document.querySelector('main').appendChild(p);
        }"""
    )
    assert any('"x"' in t for t in small_targets(page))


def test_requests_to_other_sites_are_blocked_and_recorded(contexts: Any) -> None:
    page = contexts.new().new_page()
    page.goto("/auth/login")
    assert contexts.recorder.offsite == []
    page.evaluate(
        """() => new Promise(resolve => {
            const img = new Image();
            img.onload = img.onerror = () => resolve();
            img.src = 'https://example.org/pixel.png';
        })"""
    )
    assert contexts.recorder.offsite == ["https://example.org/pixel.png"]
    with pytest.raises(AssertionError, match="left the Haven server"):
        contexts.recorder.check()
    contexts.recorder.offsite.clear()  # (the fixture checks again at teardown)


def test_csp_violations_are_recorded(contexts: Any) -> None:
    page = contexts.new().new_page()
    page.goto("/auth/login")
    page.evaluate(
        """() => {
            const s = document.createElement('script');
            s.textContent = 'window.injected = 1';
            document.body.appendChild(s);
        }"""
    )
    page.wait_for_timeout(100)
    assert page.evaluate("() => window.injected") is None, "the CSP let an inline script run"
    assert any(p.startswith("CSP:") for p in contexts.recorder.page_problems)
    contexts.recorder.page_problems.clear()


def test_layout_shift_is_measured(contexts: Any) -> None:
    page = contexts.new().new_page()
    page.goto("/auth/login")
    before = layout_shift(page)
    page.evaluate(
        """() => new Promise(resolve => {
            const block = document.createElement('div');
            block.className = 'card';
            block.textContent = 'pushed in';
            block.style.height = '400px';
            const main = document.querySelector('main');
            main.insertBefore(block, main.firstChild);
            requestAnimationFrame(() => requestAnimationFrame(resolve));
        })"""
    )
    assert layout_shift(page) > before + 0.05
