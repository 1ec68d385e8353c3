"""`python -m app.cli`: the `redact` command (the Procfile's worker runs it this way)."""

from app.cli import run

run()
