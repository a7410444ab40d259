"""Referrals: releases, sending, bed holds, provider answers (service.py); caseworkers'
pages in views.py and forms.py; commands in cli.py."""
