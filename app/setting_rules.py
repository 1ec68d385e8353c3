"""How a setting is declared (`setting`), the rules its value must meet (bounds, URL
schemes, rates: `check`), and how it is shown with its secrets masked (`shown`, `mask`).
The settings themselves are declared in app/settings.py."""

from __future__ import annotations

import dataclasses
import urllib.parse
from typing import Any

import limits


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
