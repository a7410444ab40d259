"""Retention: what is kept how long, erased or anonymized when due; commands in cli.py."""
