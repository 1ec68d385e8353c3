"""The service's version: the installed distribution's (pyproject.toml's `version`), as
`redact --version`, `redact config` and `GET /healthz` show it."""

from __future__ import annotations

from importlib.metadata import version

DISTRIBUTION = "redact"
VERSION = version(DISTRIBUTION)
