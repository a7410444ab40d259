"""The gettext catalogs are complete and safe to ship.

(a) translations/messages.pot is not stale: a fresh extraction with the options of
    `make translations` yields exactly the committed set of msgids;
(b) each shipped catalog (es, fr, ar) has every template msgid, none untranslated, none fuzzy;
(c) no translation is a copy of the English text, except a short explicit allowlist;
(d) placeholders (%(name)s, %(n)d, {name}) in each translation match the msgid's, and
    Babel's own catalog checks (python-format, plural count) pass.

(a) and (b) fail whenever someone adds or changes a user-facing string without running
`make translations` and translating it: that is intended, CI must catch it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.frontend import CommandLineInterface
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
TRANSLATIONS = ROOT / "translations"
POT = TRANSLATIONS / "messages.pot"
SHIPPED = ("es", "fr", "ar")

# Entries that legitimately read the same as the English text.
SAME_IN_EVERY_LANGUAGE = {"Haven"}
SAME_AS_ENGLISH = {
    "es": {"Error", "No", "no", "Total"},
    "fr": {
        "Action",
        "Administration",
        "Centre",
        "Code",
        "Description",
        "Latitude",
        "Longitude",
        "Note",
        "Pages",
        "Service",
        "Signature",
        "Total",
    },
    "ar": set(),
}

PLACEHOLDER = re.compile(r"%\((\w+)\)[-#0 +]*\d*(?:\.\d+)?[sdifrxXeEgGc]|%[sdifr]|\{(\w*)\}")


def _read(path: Path, locale: str | None = None) -> Catalog:
    with path.open("rb") as f:
        return read_po(f, locale=locale)


def _ids(catalog: Catalog) -> set[object]:
    return {m.id for m in catalog if m.id}


def _placeholders(text: str) -> list[str]:
    return sorted(m.group(0) for m in PLACEHOLDER.finditer(text))


def _has_letters(text: str) -> bool:
    return any(ch.isalpha() for ch in text)


@pytest.fixture(scope="module")
def template() -> Catalog:
    return _read(POT)


@pytest.fixture(scope="module", params=SHIPPED)
def catalog(request: pytest.FixtureRequest) -> Catalog:
    return _read(TRANSLATIONS / request.param / "LC_MESSAGES" / "messages.po", request.param)


def test_template_is_not_stale(tmp_path: Path, template: Catalog) -> None:
    fresh = tmp_path / "fresh.pot"
    CommandLineInterface().run(
        [
            "pybabel",
            "-q",
            "extract",
            "-F",
            str(TRANSLATIONS / "babel.cfg"),
            "-k",
            "_l",
            "-k",
            "lazy_gettext",
            "-k",
            "ngettext:1,2",
            "-o",
            str(fresh),
            "--no-location",
            "--omit-header",
            "--sort-output",
            str(ROOT),
        ]
    )
    extracted = _ids(_read(fresh))
    committed = _ids(template)
    assert extracted, "extraction found no strings: is babel.cfg right?"
    missing = sorted(map(str, extracted - committed))
    stale = sorted(map(str, committed - extracted))
    assert not missing and not stale, (
        "translations/messages.pot is out of date; run `make translations` and translate.\n"
        f"Not in the template: {missing}\nNo longer in the code: {stale}"
    )


def test_catalog_is_complete(template: Catalog, catalog: Catalog) -> None:
    lang = str(catalog.locale)
    ids = _ids(catalog)
    absent = sorted(map(str, _ids(template) - ids))
    assert not absent, f"{lang}: msgids of the template missing from the catalog: {absent}"
    untranslated = sorted(
        str(m.id)
        for m in catalog
        if m.id and (not m.string if isinstance(m.string, str) else not all(m.string))
    )
    assert not untranslated, f"{lang}: untranslated entries: {untranslated}"
    fuzzy = sorted(str(m.id) for m in catalog if m.id and m.fuzzy)
    assert not fuzzy, f"{lang}: fuzzy entries (check and clear the flag): {fuzzy}"


def test_plural_forms_header(catalog: Catalog) -> None:
    expected = {"es": 2, "fr": 2, "ar": 6}[str(catalog.locale)]
    assert catalog.num_plurals == expected
    for m in catalog:
        if m.id and m.pluralizable:
            assert len(m.string) == expected, f"{catalog.locale}: {m.id!r} needs {expected} forms"


def test_translations_are_not_english_copies(catalog: Catalog) -> None:
    lang = str(catalog.locale)
    allowed = SAME_IN_EVERY_LANGUAGE | SAME_AS_ENGLISH[lang]
    copies = []
    for m in catalog:
        if not m.id:
            continue
        english = m.id if m.pluralizable else (m.id,)
        translated = m.string if m.pluralizable else (m.string,)
        copies += [e for e in english if e in translated and _has_letters(e) and e not in allowed]
    assert not copies, f"{lang}: left in English (translate, or add to the allowlist): {copies}"


def test_placeholders_match(catalog: Catalog) -> None:
    lang = str(catalog.locale)
    wrong = []
    for m in catalog:
        if not m.id or not m.string:
            continue
        if m.pluralizable:
            expected = set(_placeholders(m.id[1])) | set(_placeholders(m.id[0]))
            forms = [set(_placeholders(s)) for s in m.string]
            # A form may drop the count ("one bed"), but may not invent a placeholder, and
            # together the forms use every placeholder of the msgid.
            if any(f - expected for f in forms) or set().union(*forms) != expected:
                wrong.append(m.id)
        elif _placeholders(m.string) != _placeholders(m.id):
            wrong.append(m.id)
    assert not wrong, f"{lang}: placeholders differ from the msgid: {wrong}"
    errors = [(m.id, [str(e) for e in errs]) for m, errs in catalog.check()]
    assert not errors, f"{lang}: Babel catalog check failed: {errors}"
