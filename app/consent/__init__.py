"""Consent: the survivor's consent records and what they permit (service.py), her safe
hours and contact rules (safe_hours.py)."""
