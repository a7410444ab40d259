"""Infrastructure every feature uses: database and engine events, encryption, the
authorization gate, the audit chain, input parsing, templating helpers, errors."""
