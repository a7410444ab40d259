"""What may be written on a survivor's phone besides catalog texts (DESIGN §1.4, §1.10).

A survivor's phone may be read by the person harming her. Survivor-facing messages are built
from catalog texts, codes, and short labels an admin approved for SMS; this module is the
one rule for such a label (today: an area's ``sms_label``, sent in the hotline's area menu):

* plain letters of any script, digits and single spaces, 1–24 characters
  (``clean_sms_label`` tidies runs of whitespace, then checks);
* no word of the discretion list of any shipped language (``DISCRETION_WORDS``: service
  types, shelter, trafficking, abuse, violence, police, ...), matched as whole words (a
  phrase as consecutive words) after ``app.textnorm.normalize`` — case- and
  accent-insensitive, Arabic letters folded as the hotline folds them — also with a plural
  "s"/"es" taken off and, for Arabic, with an attached prefix (و، ب، ل، ف، ك، ال...) taken off;
* nothing that looks like a link (``www``, ``http...``), an e-mail address (no "@" or "."
  gets through the characters rule) or a phone number (more than ``MAX_DIGITS`` digits);
* no word that mixes Latin letters with look-alike Greek or Cyrillic ones ("ѕhelter").

``is_approved`` answers the same question for a label read back from the database, so that a
label written around the admin form, or approved before a word joined the list, is not sent.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

from app.core.textnorm import normalize

SMS_LABEL_MAX = 24
MAX_DIGITS = 6  # postcodes and district numbers are fine; 7 digits start to be a phone number
REASONS = ("empty", "too_long", "characters", "mixed_scripts", "link", "phone", "word")

# Written as people write them; compared in normalised form. Each language's words are
# refused in every label, whatever the survivor's language.
DISCRETION_WORDS: dict[str, tuple[str, ...]] = {
    "en": (
        "shelter", "refuge", "safe house", "safehouse", "safe place", "hostel",
        "trafficking", "trafficked", "trafficker", "smuggling", "slavery", "slave",
        "exploitation", "exploited", "forced labour", "forced labor",
        "abuse", "abused", "abuser", "violence", "violent", "assault", "rape", "raped",
        "domestic", "sexual", "sex", "prostitution", "gbv", "dv",
        "victim", "survivor", "crisis", "hotline", "helpline", "emergency", "danger",
        "police", "legal", "lawyer", "attorney", "immigration", "asylum",
        "refugee", "medical", "clinic", "hospital", "health", "doctor", "nurse",
        "counselling", "counseling", "counsellor", "counselor", "therapy", "therapist",
        "psychologist", "psychosocial", "mental health", "trauma",
    ),
    "es": (
        "refugio", "albergue", "casa de acogida", "acogida", "casa segura", "casa refugio",
        "trata", "tratante", "trafico", "explotacion", "explotada", "esclavitud",
        "abuso", "abusada", "maltrato", "maltratada", "violencia", "violento", "violacion",
        "violada", "agresion", "domestica", "domestico", "sexual", "prostitucion",
        "victima", "sobreviviente", "crisis", "emergencia", "peligro",
        "policia", "legal", "juridico", "juridica", "abogado", "abogada", "juzgado",
        "tribunal", "asilo", "refugiado", "refugiada", "inmigracion",
        "medico", "medica", "clinica", "hospital", "salud", "enfermera",
        "psicologo", "psicologa", "psicosocial", "terapia", "consejeria", "trauma",
    ),
    "fr": (
        "refuge", "foyer", "hebergement", "abri", "maison sure", "maison d accueil",
        "centre d accueil", "mise a l abri",
        "traite", "trafic", "exploitation", "exploitee", "esclavage",
        "abus", "maltraitance", "violence", "violences", "violent", "viol", "violee",
        "agression", "conjugale", "conjugales", "domestique", "sexuel", "sexuelle",
        "prostitution", "victime", "survivante", "crise", "urgence", "danger",
        "police", "gendarmerie", "legal", "juridique", "avocat", "avocate", "tribunal",
        "asile", "refugie", "refugiee",
        "medical", "medicale", "medicaux", "clinique", "hopital", "sante", "medecin",
        "infirmiere", "psychologue", "psychosocial", "therapie", "trauma",
    ),
    "ar": (
        "مأوى", "ملجأ", "ملاذ", "بيت آمن", "دار إيواء", "إيواء", "دار أمان",
        "اتجار", "الاتجار بالبشر", "تهريب", "استغلال", "عبودية",
        "إساءة", "اعتداء", "عنف", "تعنيف", "اغتصاب", "تحرش", "منزلي", "أسري", "جنسي", "دعارة",
        "ضحية", "ضحايا", "ناجية", "ناجيات", "أزمة", "طوارئ", "خطر",
        "شرطة", "قانوني", "قانونية", "محامي", "محامية", "محكمة", "لجوء", "لاجئ", "لاجئة",
        "طبي", "طبية", "عيادة", "مستشفى", "صحة", "طبيب", "طبيبة",
        "نفسي", "نفسية", "علاج", "معالج", "إرشاد", "صدمة",
    ),
}
LINK_STARTS = ("http", "www")
_ARABIC_PREFIXES = ("وبال", "وال", "بال", "كال", "فال", "لل", "ال", "و", "ب", "ل", "ف", "ك")
# Latin letters next to their Greek and Cyrillic look-alikes in one word.
_CONFUSABLE_SCRIPTS = frozenset({"LATIN", "GREEK", "CYRILLIC"})


class SmsLabelRefused(ValueError):
    """A label that may not be sent to a survivor. ``reason`` is one of ``REASONS``;
    ``word`` is the admin's own word or phrase that matched the discretion list."""

    def __init__(self, reason: str, word: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.word = word


def _entries() -> tuple[frozenset[str], tuple[tuple[str, ...], ...]]:
    single: set[str] = set()
    phrases: set[tuple[str, ...]] = set()
    for words in DISCRETION_WORDS.values():
        for entry in words:
            parts = tuple(normalize(entry).split())
            if len(parts) == 1:
                single.add(parts[0])
            elif parts:
                phrases.add(parts)
    return frozenset(single), tuple(sorted(phrases, key=len, reverse=True))


_SINGLE, _PHRASES = _entries()


def _forms(token: str) -> frozenset[str]:
    """The forms of one normalised word that are looked up: itself, without a plural ending,
    and (Arabic) without an attached prefix."""
    forms = {token}
    if len(token) > 3 and token.endswith("s"):
        forms.add(token[:-1])
    if len(token) > 4 and token.endswith("es"):
        forms.add(token[:-2])
    if token[:1] and "\u0600" <= token[0] <= "\u06ff":
        for prefix in _ARABIC_PREFIXES:
            rest = token[len(prefix):]
            if token.startswith(prefix) and len(rest) >= 2:
                forms.add(rest)
    return frozenset(forms)


def _script(ch: str) -> str:
    return unicodedata.name(ch, "").split(" ", 1)[0]


def _check_characters(label: str) -> None:
    previous = " "
    for ch in label:
        category = unicodedata.category(ch)
        plain = (
            ch == " "
            or category[0] == "L"
            or category == "Nd"
            or (category[0] == "M" and previous != " ")  # a mark belongs to the letter before
        )
        if not plain:
            raise SmsLabelRefused("characters")
        previous = ch


def _discreet_word(words: list[str]) -> str | None:
    """The admin's word or phrase that matches the discretion list, if any."""
    tokens = [normalize(word) for word in words]
    forms = [_forms(token) for token in tokens]
    for i, token in enumerate(tokens):
        if token.startswith(LINK_STARTS):
            raise SmsLabelRefused("link", words[i])
    for phrase in _PHRASES:
        for start in range(len(tokens) - len(phrase) + 1):
            if all(part in forms[start + k] for k, part in enumerate(phrase)):
                return " ".join(words[start:start + len(phrase)])
    for i, found in enumerate(forms):
        if found & _SINGLE:
            return words[i]
    return None


def clean_sms_label(text: str) -> str:
    """The label to store: ``text`` with runs of whitespace made single spaces (NFC).
    Raises ``SmsLabelRefused`` when it may not be sent to a survivor."""
    label = " ".join(unicodedata.normalize("NFC", text or "").split())
    if not label:
        raise SmsLabelRefused("empty")
    if len(label) > SMS_LABEL_MAX:
        raise SmsLabelRefused("too_long")
    _check_characters(label)
    words = label.split(" ")
    for word in words:
        scripts = {_script(ch) for ch in word if unicodedata.category(ch)[0] == "L"}
        if len(scripts & _CONFUSABLE_SCRIPTS) > 1:
            raise SmsLabelRefused("mixed_scripts", word)
    if sum(unicodedata.category(ch) == "Nd" for ch in label) > MAX_DIGITS:
        raise SmsLabelRefused("phone")
    found = _discreet_word(words)
    if found is not None:
        raise SmsLabelRefused("word", found)
    return label


@lru_cache(maxsize=4096)
def is_approved(label: str | None) -> bool:
    """True when ``label`` may be sent as it is (the rule of ``clean_sms_label``)."""
    if not label:
        return False
    try:
        return clean_sms_label(label) == label
    except SmsLabelRefused:
        return False
