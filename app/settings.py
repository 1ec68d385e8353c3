"""Configuration, read from the environment in this one place: each setting declared once,
as a field of `Settings` (variable, type, default, bound, secrecy, meaning; docs/
configuration.md shows the same table, tested). Every default runs the embedded service; a
bad value stops start-up naming the variable (the rules: app/setting_rules.py)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from app.setting_rules import (
    ConfigError,
    check,
    check_together,
    effective_report,
    setting,
    shown,
)

__all__ = ["ConfigError", "Settings"]

DATABASE_SCHEMES = ("sqlite", "postgres", "postgresql")
STORAGE_SCHEMES = ("memory", "redis", "rediss")
QUEUE_SCHEMES = ("sqlite", "redis", "rediss")


@dataclasses.dataclass(frozen=True)
class Settings:
    database_url: str = setting(
        "DATABASE_URL",
        "sqlite:///redact.db",
        "`sqlite:///relative.db`, `sqlite:////absolute.db` or "
        "`postgresql://user:pass@host:5432/db`",
        schemes=DATABASE_SCHEMES,
    )
    ratelimit_storage_uri: str = setting(
        "RATELIMIT_STORAGE_URI",
        "memory://",
        "`memory://` (per process) or `redis://host:6379/0` (shared by workers and hosts)",
        schemes=STORAGE_SCHEMES,
    )
    rate_limit: str = setting(
        "REDACT_RATE_LIMIT",
        "170/second",
        "requests per API key, in any window of that length",
        rate=True,
    )
    min_age_seconds: int = setting(
        "REDACT_MIN_AGE_SECONDS", 3600, "the premature-redaction window", least=0
    )
    auth_failure_limit: str = setting(
        "REDACT_AUTH_FAILURE_LIMIT",
        "20/minute",
        "failed authentications per client address before its requests get 429",
        rate=True,
    )
    max_body_bytes: int = setting(
        "REDACT_MAX_BODY_BYTES", 65536, "larger request bodies get 413", least=0
    )
    credential_cache_seconds: int = setting(
        "REDACT_CREDENTIAL_CACHE_SECONDS",
        60,
        "how long a verified key/secret pair is trusted without re-checking the hash (a "
        "changed secret takes effect within this time)",
        least=0,
    )
    subject_key: str = setting(
        "REDACT_SUBJECT_KEY",
        "",
        "the secret keying the phone-number index, 16+ characters, the same for every "
        "process; **required with PostgreSQL**",
        secret=True,
        shown_default="(SQLite: `redact.db.key`)",
    )
    signing_key: str = setting(
        "REDACT_SIGNING_KEY",
        "",
        "the Ed25519 private key (a JWK or PEM; `redact keys generate` makes one) that signs "
        "the erasure log's tree heads and receipts, the same for every process; without it "
        "on PostgreSQL, tree heads and receipts answer 503",
        secret=True,
        shown_default="(SQLite: `redact.db.signing-key`)",
    )
    keystore_url: str = setting(
        "REDACT_KEYSTORE_URL",
        "",
        "the key store's database, apart from the data's; **required with PostgreSQL**",
        schemes=DATABASE_SCHEMES,
        shown_default="(SQLite: `redact.db.keystore`)",
    )
    kek: str = setting(
        "REDACT_KEK",
        "",
        "key-encryption keys, hex, comma-separated, current first (`redact keys generate-kek`)",
        secret=True,
        shown_default="(none)",
    )
    kek_file: str = setting(
        "REDACT_KEK_FILE",
        "",
        "the key-encryption keys' file, made if missing (PostgreSQL: this or `REDACT_KEK`)",
        shown_default="(SQLite: `redact.db.keystore.kek`)",
    )
    kek_retain_days: int = setting(
        "REDACT_KEK_RETAIN_DAYS",
        30,
        "days a key-encryption key outlives the `redact keys rotate` that retires it",
        least=0,
    )
    queue_url: str = setting(
        "REDACT_QUEUE_URL",
        "",
        "the job queue: `sqlite:///path` or `redis://host:6379/0`. Default: `<database "
        "file>-queue` beside an SQLite store, else the limiter's Redis, else "
        "`sqlite:///redact-queue.db`",
        schemes=QUEUE_SCHEMES,
        shown_default="see meaning",
    )
    max_active_jobs: int = setting(
        "REDACT_MAX_ACTIVE_JOBS", 25, "unfinished jobs per account; more gets 429", least=1
    )
    max_queue_depth: int = setting(
        "REDACT_MAX_QUEUE_DEPTH",
        10000,
        "queued tasks beyond which creating or moving a job gets 503",
        least=1,
    )
    sync_max_records: int = setting(
        "REDACT_SYNC_MAX_RECORDS",
        1000,
        "the largest job a `processing_mode: sync` run takes",
        least=0,
    )
    job_batch_size: int = setting(
        "REDACT_JOB_BATCH_SIZE",
        2000,
        "records per job transaction (larger is faster; on SQLite an API redaction may "
        "wait for one batch, ~0.1 s)",
        least=1,
    )
    job_lease_seconds: int = setting(
        "REDACT_JOB_LEASE_SECONDS",
        60,
        "how long a silent worker keeps a job before another takes it over",
        least=1,
    )
    max_job_body_bytes: int = setting(
        "REDACT_MAX_JOB_BODY_BYTES",
        2 * 1024 * 1024,
        "the body limit of the jobs API and of creating a legal hold",
        least=0,
    )
    max_records_body_bytes: int = setting(
        "REDACT_MAX_RECORDS_BODY_BYTES",
        4 * 1024 * 1024,
        "the body limit of `POST /v1/redact/records` (up to 1,000 records a request)",
        least=0,
    )
    metrics_token: str = setting(
        "REDACT_METRICS_TOKEN",
        "",
        "the bearer token `/metrics` requires",
        secret=True,
        shown_default="(none: `/metrics` off)",
    )
    read_timeout: int = setting(
        "REDACT_READ_TIMEOUT",
        15,
        "seconds a client has to send a whole request (headers and body), from connecting "
        "or from its previous response",
        least=1,
    )
    max_in_flight: int = setting(
        "REDACT_MAX_IN_FLIGHT",
        128,
        "admitted requests one worker process works on at once; beyond it, a request whose "
        "account holds its fair share (this number divided by the accounts in flight) is "
        "answered 503 at once; beyond 4 times it of requests in all, authenticated or not, "
        "a request is shed before its credentials are read (see Overload)",
        least=1,
    )
    webhook_timeout_seconds: int = setting(
        "REDACT_WEBHOOK_TIMEOUT_SECONDS",
        10,
        "one webhook attempt's deadline: connecting, TLS, sending, the answer's headers and body",
        least=1,
    )
    webhook_retry_base_seconds: int = setting(
        "REDACT_WEBHOOK_RETRY_BASE_SECONDS",
        5,
        "the wait after a webhook event's first failed attempt, doubling after each next "
        "one up to `REDACT_WEBHOOK_RETRY_MAX_SECONDS`",
        least=1,
    )
    webhook_retry_max_seconds: int = setting(
        "REDACT_WEBHOOK_RETRY_MAX_SECONDS",
        6 * 3600,
        "the longest wait between two attempts of a webhook event",
        least=1,
    )
    webhook_give_up_seconds: int = setting(
        "REDACT_WEBHOOK_GIVE_UP_SECONDS",
        3 * 24 * 3600,
        "how old a webhook event gets before a failed attempt is its last (three days)",
        least=0,
    )
    webhook_poll_seconds: int = setting(
        "REDACT_WEBHOOK_POLL_SECONDS",
        2,
        "how often a worker (and `redact serve`) looks for webhook events to deliver",
        least=1,
    )
    webhook_threads: int = setting(
        "REDACT_WEBHOOK_THREADS",
        8,
        "webhook endpoints a worker delivers to at once (one slow endpoint keeps one busy)",
        least=1,
    )
    webhook_allow_private: int = setting(
        "REDACT_WEBHOOK_ALLOW_PRIVATE",
        0,
        "1 to deliver webhook events to loopback, private and link-local addresses too (a "
        "receiver on the same host or network); 0 refuses them, so that no tenant reaches "
        "the service's own network through a webhook",
        least=0,
    )
    progress_seconds: int = setting(
        "REDACT_PROGRESS_SECONDS", 5, "seconds between progress lines off a terminal", least=0
    )

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            check(field, getattr(self, field.name))
        check_together(self)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from `environ` (default: os.environ); `overrides` win over both."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            name = field.metadata["variable"]
            if name not in environ:
                continue
            raw = environ[name].strip()
            if field.type == "int":
                try:
                    values[field.name] = int(raw)
                except ValueError:
                    raise ConfigError(
                        f"{name}={raw!r} must be a whole number >= {field.metadata['least']}"
                    ) from None
            else:
                values[field.name] = raw
        values.update(overrides)
        return cls(**values)

    def __repr__(self) -> str:
        """Masked as `masked()` says: a repr lands in tracebacks and debug logs."""
        return f"Settings({self.masked()!r})"

    def masked(self) -> dict[str, Any]:
        """The settings by environment variable, secrets and passwords in URLs masked."""
        return {
            field.metadata["variable"]: shown(field, getattr(self, field.name))
            for field in dataclasses.fields(self)
        }

    def report(self) -> dict[str, Any]:
        """The effective configuration, secrets masked: every setting by its variable, the
        defaults that depend on others resolved (`redact config`, the start-up log line)."""
        return effective_report(self)

    def store_options(self) -> dict[str, Any]:
        """The keyword arguments `open_store` takes from these settings."""
        return {
            "subject_key": self.subject_key.encode() if self.subject_key else None,
            "signing_key": self.signing_key or None,
            "keystore_url": self.keystore_url or None,
            "kek": self.kek or None,
            "kek_path": self.kek_file or None,
        }

    @property
    def on_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

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
