"""Accounts and sign-in: passwords, two-step codes, server-side sessions, throttling."""
