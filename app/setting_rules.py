"""How a setting is declared (`setting`), the rules its value must meet (bounds, URL
schemes, rates: `check`), and how it is shown with its secrets masked (`shown`, `mask`).
The settings themselves are declared in app/settings.py."""

from __future__ import annotations

import dataclasses
import urllib.parse
from typing import Any

import limits

from models.store.kek import EnvKeks
from models.store.keys import SigningKey, signing_key_file, subject_key_file
from models.store.keystore import keystore_file


class ConfigError(ValueError):
    """A setting has a value the service cannot run with."""


def setting(
    variable: str,
    default: Any,
    meaning: str,
    *,
    least: int | None = None,
    schemes: tuple[str, ...] = (),
    rate: bool = False,
    secret: bool = False,
    shown_default: str | None = None,
) -> Any:
    """Declare a setting: read from `variable`, `default` if unset. Whole numbers must be
    >= `least`; URLs must start with one of `schemes`; `rate` is a limit such as
    '170/second'; a `secret` is masked wherever settings are printed. `shown_default` is
    the default as the documentation words it, where the value itself would mislead."""
    return dataclasses.field(
        default=default,
        metadata={
            "variable": variable,
            "meaning": meaning,
            "least": least,
            "schemes": schemes,
            "rate": rate,
            "secret": secret,
            "shown_default": shown_default,
        },
    )


def check(field: dataclasses.Field, value: Any) -> None:
    """ConfigError naming the variable if `value` breaks the field's declaration."""
    meta = field.metadata
    name = meta["variable"]
    if meta["least"] is not None:
        if not isinstance(value, int) or isinstance(value, bool) or value < meta["least"]:
            raise ConfigError(f"{name}={value!r} must be a whole number >= {meta['least']}")
    elif meta["schemes"] and (value or field.default):
        if urllib.parse.urlsplit(value).scheme not in meta["schemes"]:
            raise ConfigError(
                f"{name}={mask(value)!r} must start with one of: "
                + ", ".join(f"{s}://" for s in meta["schemes"])
            )
    elif meta["rate"]:
        try:
            limits.parse(value)
        except ValueError:
            raise ConfigError(
                f"{name}={value!r} is not a rate limit such as '170/second'"
            ) from None


def shown(field: dataclasses.Field, value: Any) -> Any:
    if field.metadata["secret"]:
        return "***" if value else ""
    return mask(value)


def mask(value: Any) -> Any:
    """A URL with its password replaced by ***; anything else as it is."""
    if not isinstance(value, str) or "://" not in value:
        return value
    parts = urllib.parse.urlsplit(value)
    if parts.password is None:
        return value
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def check_together(settings: Any) -> None:
    """The rules that join several settings (the store, its keys); ConfigError naming the
    variable."""
    if settings.subject_key and len(settings.subject_key.encode()) < 16:
        raise ConfigError("REDACT_SUBJECT_KEY must be at least 16 characters")
    if settings.signing_key:
        try:
            SigningKey.parse(settings.signing_key)
        except ValueError as exc:
            raise ConfigError(f"REDACT_SIGNING_KEY: {exc}") from None
    if not settings.on_sqlite and not settings.keystore_url:
        raise ConfigError(
            "REDACT_KEYSTORE_URL must be set with PostgreSQL (a database apart from "
            "DATABASE_URL's, so that a backup of the data holds no key)"
        )
    keys_in_files = (settings.on_sqlite and settings.keystore_url in ("",)) or (
        settings.keystore_url.startswith("sqlite")
    )
    if not keys_in_files and not (settings.kek or settings.kek_file):
        raise ConfigError("REDACT_KEK or REDACT_KEK_FILE must be set with PostgreSQL")
    if settings.keystore_url and _same_database(settings.keystore_url, settings.database_url):
        raise ConfigError("REDACT_KEYSTORE_URL must name another database than DATABASE_URL")
    if settings.kek:
        try:
            EnvKeks(settings.kek)
        except ValueError as exc:
            raise ConfigError(f"REDACT_KEK: {exc}") from None
    if not settings.subject_key and not settings.database_url.startswith("sqlite"):
        raise ConfigError(
            "REDACT_SUBJECT_KEY must be set with PostgreSQL (a random secret of at least"
            " 16 characters, the same for every process)"
        )


def effective_report(settings: Any) -> dict[str, Any]:
    """The effective configuration, secrets masked: every setting by its variable, with
    the defaults that depend on others resolved (`redact config`, the start-up log line)."""
    report = settings.masked()
    report["REDACT_QUEUE_URL"] = mask(settings.effective_queue_url)
    path = settings.database_url.split(":///", 1)[-1]
    if not settings.subject_key:
        report["REDACT_SUBJECT_KEY"] = f"(key file {subject_key_file(path)})"
    keystore = settings.keystore_url
    if not keystore and settings.on_sqlite:
        keystore = f"sqlite:///{keystore_file(path)}"
    report["REDACT_KEYSTORE_URL"] = mask(keystore)
    if not (settings.kek or settings.kek_file) and keystore.startswith("sqlite:///"):
        report["REDACT_KEK_FILE"] = f"{keystore.split(':///', 1)[1]}.kek"
    if not settings.signing_key and settings.on_sqlite:
        report["REDACT_SIGNING_KEY"] = f"(key file {signing_key_file(path)})"
    return report


def _same_database(one: str, other: str) -> bool:
    return one.split("?", 1)[0].rstrip("/") == other.split("?", 1)[0].rstrip("/")


def declared(settings_class: type) -> list[dict[str, Any]]:
    """Every setting of `settings_class` as declared: variable, default as documented,
    meaning."""
    return [
        {
            "variable": field.metadata["variable"],
            "default": field.metadata["shown_default"] or f"`{field.default}`",
            "meaning": field.metadata["meaning"],
        }
        for field in dataclasses.fields(settings_class)
    ]
