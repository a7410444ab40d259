"""Controlled vocabularies shared by intake, directory, matching, referrals and the hotline.
Stored values are these stable keys; labels are translated where they are shown."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

SERVICE_CATEGORIES = ("shelter", "legal", "medical", "psychosocial", "other")
CATEGORY_LABELS = {
    "shelter": _l("Shelter"),
    "legal": _l("Legal aid"),
    "medical": _l("Medical"),
    "psychosocial": _l("Psychosocial support"),
    "other": _l("Other support"),
}

URGENCIES = ("immediate", "soon", "routine")
URGENCY_LABELS = {
    "immediate": _l("Immediate"),
    "soon": _l("Soon (days)"),
    "routine": _l("Routine"),
}

AGE_BANDS = ("under_18", "18_24", "25_34", "35_49", "50_64", "65_plus")
AGE_BAND_LABELS = {
    "under_18": _l("Under 18"),
    "18_24": _l("18–24"),
    "25_34": _l("25–34"),
    "35_49": _l("35–49"),
    "50_64": _l("50–64"),
    "65_plus": _l("65 or older"),
}

# The exact ages of each band, inclusive (None: no upper end). A service's eligibility is
# kept as exact ages; a band is eligible whole, in part, or not at all (app.models.directory).
AGE_BAND_RANGES: dict[str, tuple[int, int | None]] = {
    "under_18": (0, 17),
    "18_24": (18, 24),
    "25_34": (25, 34),
    "35_49": (35, 49),
    "50_64": (50, 64),
    "65_plus": (65, None),
}


def age_range_label(min_age: int | None, max_age: int | None) -> str:
    """Exact eligible ages, short: "12+", "13–17", "up to 20", "all ages"."""
    low = min_age or None  # 0 is no lower limit
    if low is None and max_age is None:
        return str(_l("all ages"))
    if max_age is None:
        return f"{low}+"
    if low is None:
        return str(_l("up to %(max)s", max=max_age))
    return f"{low}–{max_age}"


GENDERS = ("female", "male", "nonbinary", "other")
GENDER_LABELS = {
    "female": _l("Woman"),
    "male": _l("Man"),
    "nonbinary": _l("Non-binary"),
    "other": _l("Another gender"),
}

# Languages a survivor may speak (ISO 639-1). Interface languages are a subset (config LANGUAGES).
SURVIVOR_LANGUAGES = ("en", "es", "fr", "ar", "pt", "ru", "uk", "zh", "vi", "tl", "hi", "sw")
SURVIVOR_LANGUAGE_LABELS = {
    "en": "English",
    "es": "Español",
    "fr": "Français",
    "ar": "العربية",
    "pt": "Português",
    "ru": "Русский",
    "uk": "Українська",
    "zh": "中文",
    "vi": "Tiếng Việt",
    "tl": "Tagalog",
    "hi": "हिन्दी",
    "sw": "Kiswahili",
}

# Accessibility needs matching can weigh (services record whether they meet each one).
ACCESSIBILITY_NEEDS = ("wheelchair", "hearing")
ACCESSIBILITY_LABELS = {
    "wheelchair": _l("Wheelchair access"),
    "hearing": _l("Hearing support (induction loop or sign language)"),
}

# Why a case was closed (issue 16; the keys are app.models.cases.CLOSE_REASONS).
CLOSE_REASON_LABELS = {
    "goals_met": _l("Goals met"),
    "referred_elsewhere": _l("Referred elsewhere"),
    "lost_contact": _l("Lost contact"),
    "survivor_choice": _l("The survivor's choice"),
    "moved_away": _l("Moved away"),
}
