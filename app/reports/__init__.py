"""Aggregate figures (supervisors, admins): the domain in figures.py, pages in views.py."""
