"""Administration (admins): organizations, users and their access."""
