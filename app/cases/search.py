"""Finding a case (issue 16): by reference code, by phone number, by alias.

One query box, read in this order:

* **Reference code** (``K7Q-4MX``, typed loosely: ``k7q4mx``): the organization's case with
  that code, whatever its status.
* **Phone number** (digits, ``+``, spaces, dashes, brackets): normalised to E.164 with the
  organization's default region and looked up through the existing blind index
  (``Case.phone_index``): an exact number, never a prefix, never plaintext in the database.
* **Alias** (anything else, and a reference-shaped word that is no case's code): the alias is
  sealed with each case's own key, so the organization's *open* cases' aliases are unsealed
  in memory, folded with ``app.textnorm.normalize`` (case and accents ignored) and compared
  there. Nothing searchable is stored: no plaintext column, no new index. Every word of the
  query must occur in the alias (``mar gar`` finds "María García").

Every path is scoped to one organization. The query is never logged or audited (the audit
event names the search kind only) and results are the cases, not the query.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import Select, select
from sqlalchemy.orm import selectinload

from app.cases import service as cases
from app.core.crypto import InvalidPhoneNumber, keyring, normalize_phone
from app.core.extensions import db
from app.core.textnorm import normalize
from app.models.cases import Case
from app.models.keys import DataKey

MAX_QUERY = 64
MAX_RESULTS = 50
_PHONE_RE = re.compile(r"^\+?[\d\s().\-/]{6,}$")


class SearchError(ValueError):
    """The query cannot be searched; ``kind`` says why (the view words the message)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


@dataclass
class SearchResult:
    kind: str  # "reference", "phone" or "alias"
    cases: list[Case] = field(default_factory=list)
    truncated: bool = False


def find_cases(organization_id: int, query: str, *, phone_region: str) -> SearchResult:
    """The organization's cases that ``query`` names. Raises ``SearchError("empty")`` for a
    query with nothing to search and ``SearchError("phone")`` for something typed as a phone
    number that is not one."""
    text = (query or "").strip()[:MAX_QUERY]
    folded = normalize(text)
    if not folded:
        raise SearchError("empty")
    reference = cases.normalize_reference(text)
    if reference is not None:
        found = _load(organization_id, [reference], by_reference=True)
        if found:
            return SearchResult("reference", found)
    if _PHONE_RE.match(text) and sum(ch.isdigit() for ch in text) >= 6:
        return SearchResult("phone", by_phone(organization_id, text, phone_region))
    ids = alias_matches(organization_id, folded)
    truncated = len(ids) > MAX_RESULTS
    return SearchResult("alias", _load(organization_id, ids[:MAX_RESULTS]), truncated)


def by_phone(organization_id: int, raw: str, region: str) -> list[Case]:
    try:
        e164 = normalize_phone(raw, region)
    except InvalidPhoneNumber as exc:
        raise SearchError("phone") from exc
    index = keyring().blind_index(e164)
    return list(
        db.session.scalars(
            _with_listing(select(Case))
            .where(
                Case.organization_id == organization_id,
                Case.phone_index == index,
                Case.status != "erased",
            )
            .order_by(Case.created_at.desc(), Case.id.desc())
            .limit(MAX_RESULTS)
        )
    )


def alias_matches(organization_id: int, folded_query: str) -> list[int]:
    """Ids of the organization's open cases whose alias holds every word of the (already
    normalised) query, newest first. Reads only the sealed alias and its wrapped key, and
    unseals them here; a case whose key cannot be unwrapped is skipped, not an error."""
    words = folded_query.split()
    rows = db.session.execute(alias_rows(organization_id)).all()
    master = keyring().multi
    found: list[int] = []
    for case_id, alias_token, wrapped in rows:
        alias = _unseal(master, wrapped, alias_token)
        if alias is None:
            continue
        folded = normalize(alias)
        if all(word in folded for word in words):
            found.append(case_id)
    return found


def alias_rows(organization_id: int) -> Select[int, bytes | None, bytes]:
    """(id, sealed alias, wrapped key) of the organization's open cases with an alias,
    newest first: all the alias search reads (the benchmark's floor reads the same)."""
    return (
        select(Case.id, Case.alias_enc, DataKey.wrapped)
        .join(DataKey, DataKey.id == Case.data_key_id)
        .where(
            Case.organization_id == organization_id,
            Case.status == "open",
            Case.alias_enc.is_not(None),
        )
        .order_by(Case.created_at.desc(), Case.id.desc())
    )


def _unseal(master: MultiFernet, wrapped: bytes | None, token: bytes | None) -> str | None:
    if wrapped is None or token is None:
        return None
    try:
        return Fernet(master.decrypt(bytes(wrapped))).decrypt(bytes(token)).decode()
    except InvalidToken:
        return None


def _with_listing(stmt):  # type: ignore[no-untyped-def]
    return stmt.options(
        selectinload(Case.data_key), selectinload(Case.area), selectinload(Case.needs)
    )


def _load(
    organization_id: int, keys: Sequence[int | str], *, by_reference: bool = False
) -> list[Case]:
    if not keys:
        return []
    column = Case.reference if by_reference else Case.id
    rows = db.session.scalars(
        _with_listing(select(Case)).where(
            Case.organization_id == organization_id, column.in_(list(keys))
        )
    ).all()
    order = {key: n for n, key in enumerate(keys)}
    return sorted(rows, key=lambda c: order[c.reference if by_reference else c.id])
