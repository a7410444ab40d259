"""Text normalised for matching words, whatever the language and the keyboard: the hotline's
keywords and menus (``app.hotline``) and the discretion list (``app.discretion``) compare
words in this one form, so that "Refugio", "REFUGIO" and "refugío" are one word, and so are
"الشرطة" and "الشرطه"."""

from __future__ import annotations

import unicodedata

_ARABIC_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹", "01234567890123456789")
_ARABIC_FOLD = str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا", "ى": "ي", "ة": "ه", "ـ": None})


def normalize(text: str) -> str:
    """Case-folded, accents removed (Latin), Arabic letter variants folded, Eastern Arabic
    digits as ASCII, punctuation (but "-", as in codes) and emoji turned into spaces,
    whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text or "")[: messaging_limit()]
    text = text.translate(_ARABIC_DIGITS).translate(_ARABIC_FOLD).casefold()
    decomposed = unicodedata.normalize("NFD", text)
    kept = []
    for ch in decomposed:
        category = unicodedata.category(ch)
        if category == "Mn":  # accents and Arabic diacritics
            continue
        kept.append(ch if category[0] in "LN" or ch == "-" else " ")
    return " ".join("".join(kept).split())


def messaging_limit() -> int:
    return 1600
