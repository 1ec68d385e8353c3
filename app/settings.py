"""Configuration, read from the environment in this one place.

Every setting has a default that runs the embedded service (SQLite file, in-memory
limiter); a bad value stops start-up with a message naming the variable.
"""

from __future__ import annotations

import dataclasses
import os
import urllib.parse
from typing import Mapping

import limits


class ConfigError(ValueError):
    """A setting has a value the service cannot run with."""


DATABASE_SCHEMES = ("sqlite", "postgres", "postgresql")
STORAGE_SCHEMES = ("memory", "redis", "rediss")


@dataclasses.dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///redact.db"
    ratelimit_storage_uri: str = "memory://"
    rate_limit: str = "170/second"
    min_age_seconds: int = 3600
    auth_failure_limit: str = "20/minute"
    max_body_bytes: int = 65536
    credential_cache_seconds: int = 60
    threads: int = 32

    ENVIRONMENT = {
        "database_url": "DATABASE_URL",
        "ratelimit_storage_uri": "RATELIMIT_STORAGE_URI",
        "rate_limit": "REDACT_RATE_LIMIT",
        "min_age_seconds": "REDACT_MIN_AGE_SECONDS",
        "auth_failure_limit": "REDACT_AUTH_FAILURE_LIMIT",
        "max_body_bytes": "REDACT_MAX_BODY_BYTES",
        "credential_cache_seconds": "REDACT_CREDENTIAL_CACHE_SECONDS",
        "threads": "REDACT_THREADS",
    }

    def __post_init__(self) -> None:
        _check_url("DATABASE_URL", self.database_url, DATABASE_SCHEMES)
        _check_url("RATELIMIT_STORAGE_URI", self.ratelimit_storage_uri, STORAGE_SCHEMES)
        for field in ("rate_limit", "auth_failure_limit"):
            try:
                limits.parse(getattr(self, field))
            except ValueError:
                raise ConfigError(
                    f"{self.ENVIRONMENT[field]}={getattr(self, field)!r} is not a rate limit"
                    " such as '170/second'"
                ) from None
        for field, least in (("min_age_seconds", 0), ("max_body_bytes", 0),
                             ("credential_cache_seconds", 0), ("threads", 1)):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ConfigError(
                    f"{self.ENVIRONMENT[field]}={value!r} must be a whole number >= {least}"
                )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> "Settings":
        """Build settings from `environ` (default: os.environ); `overrides` win over both."""
        environ = os.environ if environ is None else environ
        values: dict = {}
        for field in dataclasses.fields(cls):
            name = cls.ENVIRONMENT[field.name]
            if name not in environ:
                continue
            raw = environ[name].strip()
            if field.type == "int":
                try:
                    values[field.name] = int(raw)
                except ValueError:
                    raise ConfigError(f"{name}={raw!r} must be a whole number >= 0") from None
            else:
                values[field.name] = raw
        values.update(overrides)
        return cls(**values)

    def masked(self) -> dict:
        """The settings by environment variable, passwords in URLs masked."""
        return {
            self.ENVIRONMENT[field.name]: _mask(getattr(self, field.name))
            for field in dataclasses.fields(self)
        }


def _check_url(name: str, value: str, schemes: tuple[str, ...]) -> None:
    scheme = urllib.parse.urlsplit(value).scheme
    if scheme not in schemes:
        raise ConfigError(
            f"{name}={_mask(value)!r} must start with one of: "
            + ", ".join(f"{s}://" for s in schemes)
        )


def _mask(value):
    if not isinstance(value, str) or "://" not in value:
        return value
    parts = urllib.parse.urlsplit(value)
    if parts.password is None:
        return value
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
