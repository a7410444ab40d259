"""Home page, language choice, quick exit."""
