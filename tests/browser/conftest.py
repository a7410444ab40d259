"""Browser test fixtures: Haven served by Werkzeug on 127.0.0.1 (a free port, a background
thread, its own freshly migrated database) and Debian's Chromium driven by Playwright.

* ``live``: the server (``live.url``), plus a second server on the same database whose idle
  timeout is a few seconds (``live.short_url``) for the idle-lock tests.
* ``browser``: one headless Chromium for the session. Missing Chromium is a failure, never
  a skip: install it with ``apt-get install -y chromium``.
* ``contexts``: makes browser contexts (tablet viewport, a locale for Accept-Language) that
  record every request; any request that leaves the Haven server is blocked and fails the
  test, and so does a CSP violation or a JavaScript error on a page.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from app import create_app
from app.core.extensions import db
from tests import factories
from tests.browser.support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    SHORT_IDLE_SECONDS,
    TABLET,
    Person,
    person,
)
from tests.conftest import Databases, make_config


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass  # the request log would drown the test output


class _Server:
    def __init__(self, app: Any) -> None:
        self.server: BaseWSGIServer = make_server(
            "127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler
        )
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@dataclass
class Live:
    app: Any
    url: str
    short_app: Any
    short_url: str
    origins: tuple[str, ...]

    def seed(self, build: Callable[[], Any]) -> Any:
        """Run ``build`` (factories) in an app context of the served app and commit."""
        with self.app.app_context():
            result = build()
            db.session.commit()
            db.session.remove()
            return result


@pytest.fixture(scope="session")
def live(databases: Databases) -> Iterator[Live]:
    from flask_migrate import upgrade

    url = databases.fresh()
    app = create_app(make_config(url, WTF_CSRF_ENABLED=True))
    with app.app_context():
        upgrade(revision="heads")
    # The same database, an idle timeout of seconds: the server-side timeout and the page's
    # lock timer (which reads it from the page) can both be seen to work.
    short_app = create_app(
        make_config(url, WTF_CSRF_ENABLED=True, IDLE_TIMEOUT=timedelta(seconds=SHORT_IDLE_SECONDS))
    )
    main, short = _Server(app), _Server(short_app)
    try:
        yield Live(app, main.url, short_app, short.url, (main.url, short.url))
    finally:
        main.stop()
        short.stop()
        for each in (app, short_app):
            with each.app_context():
                db.session.remove()
                db.engine.dispose()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: install it (apt-get install -y chromium); "
            "the browser tests do not skip.",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@dataclass
class Recorder:
    """Every request made by the contexts of one test, and what went wrong on the pages."""

    origins: tuple[str, ...]
    requests: list[str] = field(default_factory=list)
    offsite: list[str] = field(default_factory=list)
    page_problems: list[str] = field(default_factory=list)

    def is_local(self, url: str) -> bool:
        return any(url == o or url.startswith(o + "/") for o in self.origins)

    def check(self) -> None:
        assert self.requests, "no request was recorded: the recorder is not wired"
        assert not self.offsite, f"requests left the Haven server: {self.offsite}"
        assert not self.page_problems, f"problems on the pages: {self.page_problems}"


class Contexts:
    def __init__(self, browser: Any, live: Live) -> None:
        self.browser = browser
        self.live = live
        self.recorder = Recorder(live.origins)
        self.made: list[Any] = []

    def new(
        self,
        locale: str = "en-US",
        viewport: dict[str, int] | None = None,
        base_url: str | None = None,
        **options: Any,
    ) -> Any:
        context = self.browser.new_context(
            locale=locale,
            viewport=viewport or TABLET,
            base_url=base_url or self.live.url,
            has_touch=True,
            **options,
        )
        context.set_default_timeout(10_000)
        recorder = self.recorder

        def on_request(request: Any) -> None:
            recorder.requests.append(request.url)
            if not recorder.is_local(request.url) and not request.url.startswith("data:"):
                recorder.offsite.append(request.url)

        def guard(route: Any) -> None:
            # Routing every request also turns the HTTP cache off: each page load is cold,
            # so measured page weights include every asset.
            if recorder.is_local(route.request.url):
                route.continue_()
            else:
                recorder.offsite.append(route.request.url)
                route.abort("blockedbyclient")

        def on_page(page: Any) -> None:
            page.on("pageerror", lambda exc: recorder.page_problems.append(f"JS error: {exc}"))
            page.on("console", lambda msg: _console(recorder, msg))

        context.on("request", on_request)
        context.route("**/*", guard)
        context.on("page", on_page)
        self.made.append(context)
        return context

    def close(self) -> None:
        for context in self.made:
            context.close()
        self.made.clear()


def _console(recorder: Recorder, msg: Any) -> None:
    text = msg.text
    if msg.type == "error" and (
        "Content Security Policy" in text or "Content-Security-Policy" in text
    ):
        recorder.page_problems.append(f"CSP: {text}")


@pytest.fixture
def contexts(browser: Any, live: Live) -> Iterator[Contexts]:
    made = Contexts(browser, live)
    yield made
    made.close()
    # Also checked in each test; here too so that no test can forget it.
    assert not made.recorder.offsite, f"requests left the Haven server: {made.recorder.offsite}"


# --- people and places -------------------------------------------------------------------


@dataclass
class World:
    ngo_id: int
    area_id: int
    area_name: str
    provider_org_id: int
    service_id: int
    service_name: str
    provider: Person


@pytest.fixture(scope="session")
def world(live: Live) -> World:
    """An NGO that requires two-step sign-in, an area, and a provider with a shelter there."""

    def build() -> World:
        ngo = factories.make_org("ngo", name="Harbour NGO", totp_required=True)
        area = factories.make_area("Riverside")
        provider_org = factories.make_org("provider", name="Safe Roof Shelter")
        service = factories.make_service(
            provider_org,
            category="shelter",
            name="Safe Roof night shelter",
            areas=[area],
            languages="en,es,ar",
            beds_total=60,  # every referral in the session holds one
            beds_available=40,
            intake_phone="+14155550199",
        )
        provider = factories.make_user("provider", provider_org, totp=True)
        return World(
            ngo.id, area.id, area.name, provider_org.id, service.id, service.name, person(provider)
        )

    return live.seed(build)


@pytest.fixture
def new_caseworker(live: Live, world: World) -> Callable[..., Person]:
    """A fresh caseworker of the TOTP-requiring NGO (a fresh user per sign-in: a TOTP code
    is accepted once per user)."""

    def make(locale: str | None = None, role: str = "caseworker") -> Person:
        def build() -> Person:
            from app.models import Organization

            org = db.session.get(Organization, world.ngo_id)
            user = factories.make_user(role, org, totp=True)
            user.locale = locale
            return person(user)

        return live.seed(build)

    return make


@pytest.fixture
def new_provider(live: Live, world: World) -> Callable[..., Person]:
    """A fresh user of the provider organization that runs the shelter, TOTP enrolled."""

    def make(locale: str | None = None) -> Person:
        def build() -> Person:
            from app.models import Organization

            org = db.session.get(Organization, world.provider_org_id)
            user = factories.make_user("provider", org, totp=True)
            user.locale = locale
            return person(user)

        return live.seed(build)

    return make
