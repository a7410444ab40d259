"""Helpers for the browser tests: sign-in through the real forms, axe-core, page weight."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pyotp

from tests import factories

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHROMIUM = os.environ.get("HAVEN_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium calls Google on start.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AXE_JS = os.path.join(ROOT, ".tools", "axe", "axe.min.js")
SCREENSHOTS = os.path.join(ROOT, "test-output", "screenshots")
TABLET = {"width": 768, "height": 1024}
TABLET_LANDSCAPE = {"width": 1024, "height": 768}
SHORT_IDLE_SECONDS = 4  # the idle-lock server's timeout


PAGE_BUDGET_BYTES = 150 * 1024
BLOCKING_IMPACTS = ("serious", "critical")


@dataclass
class Person:
    id: int
    username: str
    totp_secret: str | None
    organization_id: int

    def code(self) -> str:
        assert self.totp_secret
        return pyotp.TOTP(self.totp_secret).now()


def person(user: Any) -> Person:
    return Person(user.id, user.username, user.totp_secret, user.organization_id)


def submit(page: Any, scope: str = "main form") -> None:
    page.locator(f"{scope} [type=submit]").first.click()


def sign_in(page: Any, who: Person, origin: str = "") -> None:
    """Password, then the 6-digit code, through the real forms; ends on the home page."""
    page.goto(origin + "/auth/login")
    page.fill("#username", who.username)
    page.fill("#password", factories.PASSWORD)
    submit(page)
    page.wait_for_url("**/auth/verify")
    page.fill("#code", who.code())
    submit(page)
    page.wait_for_url(lambda url: "/auth/" not in url)


def html_lang_dir(page: Any) -> tuple[str, str]:
    return (
        page.evaluate("() => document.documentElement.lang"),
        page.evaluate("() => document.documentElement.dir"),
    )


# --- axe-core --------------------------------------------------------------------------


@lru_cache(maxsize=1)
def axe_source() -> str:
    if not os.path.exists(AXE_JS):
        raise AssertionError(f"axe-core is missing at {AXE_JS}: run tests/tools/install_axe.sh")
    with open(AXE_JS, encoding="utf-8") as fh:
        return fh.read()


def run_axe(page: Any) -> list[dict[str, Any]]:
    """All axe-core violations of the page as loaded (WCAG 2.1 A/AA and best practices).
    The script is evaluated through the DevTools protocol, so the page's CSP (no inline
    scripts) stays on and is itself checked by the recorder."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(axe_source() + "\n;void 0")
    result: list[dict[str, Any]] = page.evaluate(
        """async () => {
            const r = await axe.run(document, {resultTypes: ['violations']});
            return r.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help,
                targets: v.nodes.slice(0, 5).map(n => n.target.join(' ')),
                count: v.nodes.length}));
        }"""
    )
    return result


def blocking(violations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [v for v in violations if v["impact"] in BLOCKING_IMPACTS]


# --- page weight -------------------------------------------------------------------------


@dataclass
class Weight:
    total: int
    by_type: dict[str, int]
    requests: int


def load_measured(page: Any, url: str | Callable[[], Any]) -> Weight:
    """Navigate to ``url`` (or run an action that navigates, like a form post) and add up
    what the network transferred for it: headers and bodies of the document, its redirects,
    CSS, JS and images (the context's routing keeps the cache off: nothing is left out)."""
    responses: list[Any] = []

    def keep(response: Any) -> None:
        responses.append(response)

    page.on("response", keep)
    try:
        if callable(url):
            url()
        else:
            page.goto(url, wait_until="load")
        page.wait_for_load_state("load")
    finally:
        page.remove_listener("response", keep)
    by_type: dict[str, int] = {}
    total = 0
    for response in responses:
        sizes = response.request.sizes()
        size = sizes["responseBodySize"] + sizes["responseHeadersSize"]
        if sizes["responseBodySize"] <= 0 and response.status == 200:
            size += len(response.body())
        kind = response.request.resource_type
        by_type[kind] = by_type.get(kind, 0) + size
        total += size
    return Weight(total, by_type, len(responses))


def screenshot(page: Any, name: str) -> str:
    os.makedirs(SCREENSHOTS, exist_ok=True)
    path = os.path.join(SCREENSHOTS, f"{name}.png")
    page.screenshot(path=path, full_page=True)
    return path


# --- touch targets -------------------------------------------------------------------------

MIN_TARGET_PX = 44

_SMALL_TARGETS_JS = """(min) => {
  const found = [];
  const seen = new Set();
  const selector = 'a[href], button, input:not([type=hidden]), select, textarea, summary';
  for (const el of document.querySelectorAll(selector)) {
    const style = getComputedStyle(el);
    if (style.display === 'none' || style.visibility === 'hidden') continue;
    let target = el;
    if (el.matches('input[type=checkbox], input[type=radio]')) {
      // The label is the target: tapping it toggles the box.
      target = el.closest('label')
        || (el.id && document.querySelector('label[for="' + el.id + '"]')) || el;
    }
    if (seen.has(target)) continue;
    seen.add(target);
    let r = target.getBoundingClientRect();
    if (target !== el && !target.contains(el)) {
      // A box with a label beside it: together they are one target.
      const b = el.getBoundingClientRect();
      const left = Math.min(r.left, b.left), right = Math.max(r.right, b.right);
      const top = Math.min(r.top, b.top), bottom = Math.max(r.bottom, b.bottom);
      r = {left, right, top, bottom, width: right - left, height: bottom - top};
    }
    if (r.width === 0 && r.height === 0) continue;
    if (r.right <= 0 || r.left >= window.innerWidth) continue;  // off-screen (skip link)
    // Links inside a sentence are exempt (WCAG 2.5.5 "inline").
    if (el.matches('a') && style.display === 'inline' && el.parentElement
        && el.parentElement.textContent.trim() !== el.textContent.trim()) continue;
    if (r.height < min - 0.5 || r.width < min - 0.5) {
      const name = (target.textContent || target.getAttribute('aria-label')
        || target.getAttribute('name') || '').trim().slice(0, 30);
      found.push(target.tagName.toLowerCase()
        + (target.className ? '.' + String(target.className).split(' ').join('.') : '')
        + ' "' + name + '" ' + Math.round(r.width) + 'x' + Math.round(r.height));
    }
  }
  return found;
}"""


def small_targets(page: Any) -> list[str]:
    """Visible tap targets smaller than 44×44 CSS pixels."""
    found: list[str] = page.evaluate(_SMALL_TARGETS_JS, MIN_TARGET_PX)
    return found


# --- layout stability ------------------------------------------------------------------------

_LAYOUT_SHIFT_JS = """() => new Promise(resolve => {
  let total = 0;
  const observer = new PerformanceObserver(list => {
    for (const entry of list.getEntries()) { if (!entry.hadRecentInput) total += entry.value; }
  });
  observer.observe({type: 'layout-shift', buffered: true});
  setTimeout(() => { observer.disconnect(); resolve(total); }, 20);
})"""


def layout_shift(page: Any) -> float:
    """Cumulative layout shift of the page so far (0 = nothing moved under the finger)."""
    value: float = page.evaluate(_LAYOUT_SHIFT_JS)
    return value
