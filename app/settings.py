"""Configuration, read from the environment in this one place.

Every setting has a default that runs the embedded service (SQLite file, in-memory
limiter); a bad value stops start-up with a message naming the variable.
"""

from __future__ import annotations

import dataclasses
import os
import urllib.parse
from collections.abc import Mapping
from typing import ClassVar

import limits

from models.subjects import key_file


class ConfigError(ValueError):
    """A setting has a value the service cannot run with."""


DATABASE_SCHEMES = ("sqlite", "postgres", "postgresql")
STORAGE_SCHEMES = ("memory", "redis", "rediss")
QUEUE_SCHEMES = ("sqlite", "redis", "rediss")


@dataclasses.dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///redact.db"
    ratelimit_storage_uri: str = "memory://"
    rate_limit: str = "170/second"
    min_age_seconds: int = 3600
    auth_failure_limit: str = "20/minute"
    max_body_bytes: int = 65536
    credential_cache_seconds: int = 60
    subject_key: str = ""
    queue_url: str = ""
    max_active_jobs: int = 25
    max_queue_depth: int = 10000
    sync_max_records: int = 1000
    job_batch_size: int = 2000
    job_lease_seconds: int = 60
    max_job_body_bytes: int = 2 * 1024 * 1024
    metrics_token: str = ""
    read_timeout: int = 15
    max_in_flight: int = 128

    ENVIRONMENT: ClassVar[dict[str, str]] = {
        "database_url": "DATABASE_URL",
        "ratelimit_storage_uri": "RATELIMIT_STORAGE_URI",
        "rate_limit": "REDACT_RATE_LIMIT",
        "min_age_seconds": "REDACT_MIN_AGE_SECONDS",
        "auth_failure_limit": "REDACT_AUTH_FAILURE_LIMIT",
        "max_body_bytes": "REDACT_MAX_BODY_BYTES",
        "credential_cache_seconds": "REDACT_CREDENTIAL_CACHE_SECONDS",
        "subject_key": "REDACT_SUBJECT_KEY",
        "queue_url": "REDACT_QUEUE_URL",
        "max_active_jobs": "REDACT_MAX_ACTIVE_JOBS",
        "max_queue_depth": "REDACT_MAX_QUEUE_DEPTH",
        "sync_max_records": "REDACT_SYNC_MAX_RECORDS",
        "job_batch_size": "REDACT_JOB_BATCH_SIZE",
        "job_lease_seconds": "REDACT_JOB_LEASE_SECONDS",
        "max_job_body_bytes": "REDACT_MAX_JOB_BODY_BYTES",
        "metrics_token": "REDACT_METRICS_TOKEN",
        "read_timeout": "REDACT_READ_TIMEOUT",
        "max_in_flight": "REDACT_MAX_IN_FLIGHT",
    }
    SECRETS = ("subject_key", "metrics_token")

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
        if self.queue_url:
            _check_url("REDACT_QUEUE_URL", self.queue_url, QUEUE_SCHEMES)
        if self.subject_key and len(self.subject_key.encode()) < 16:
            raise ConfigError("REDACT_SUBJECT_KEY must be at least 16 characters")
        if not self.subject_key and not self.database_url.startswith("sqlite"):
            raise ConfigError(
                "REDACT_SUBJECT_KEY must be set with PostgreSQL (a random secret of at least"
                " 16 characters, the same for every process)"
            )
        for field, least in (
            ("min_age_seconds", 0),
            ("max_body_bytes", 0),
            ("credential_cache_seconds", 0),
            ("max_active_jobs", 1),
            ("max_queue_depth", 1),
            ("sync_max_records", 0),
            ("job_batch_size", 1),
            ("job_lease_seconds", 1),
            ("max_job_body_bytes", 0),
            ("read_timeout", 1),
            ("max_in_flight", 1),
        ):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ConfigError(
                    f"{self.ENVIRONMENT[field]}={value!r} must be a whole number >= {least}"
                )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> Settings:
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

    def __repr__(self) -> str:
        """Masked as `masked()` says: a repr lands in tracebacks and debug logs."""
        return f"Settings({self.masked()!r})"

    def masked(self) -> dict:
        """The settings by environment variable, passwords in URLs masked."""
        return {
            self.ENVIRONMENT[field.name]: (
                ("***" if getattr(self, field.name) else "")
                if field.name in self.SECRETS
                else _mask(getattr(self, field.name))
            )
            for field in dataclasses.fields(self)
        }

    def report(self) -> dict:
        """The effective configuration, secrets masked: every setting by its variable,
        with the defaults that depend on others resolved (`redact config`, and the
        start-up log line)."""
        report = self.masked()
        report["REDACT_QUEUE_URL"] = _mask(self.effective_queue_url)
        if not self.subject_key:
            path = self.database_url.split(":///", 1)[-1]
            report["REDACT_SUBJECT_KEY"] = f"(key file {key_file(path)})"
        return report

    @property
    def subject_key_bytes(self) -> bytes | None:
        return self.subject_key.encode() if self.subject_key else None

    @property
    def effective_queue_url(self) -> str:
        """The job queue: REDACT_QUEUE_URL, else an SQLite file beside an SQLite store,
        else the limiter's Redis, else `redact-queue.db` in the working directory."""
        if self.queue_url:
            return self.queue_url
        if self.database_url.startswith("sqlite:///") and ":memory:" not in self.database_url:
            return f"{self.database_url}-queue"
        if self.ratelimit_storage_uri.startswith(("redis://", "rediss://")):
            return self.ratelimit_storage_uri
        return "sqlite:///redact-queue.db"


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
