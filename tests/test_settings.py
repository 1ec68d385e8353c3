"""Settings are declared once (app/settings.py); the documentation's table says the same,
and every setting is read from its variable and checked against its declaration."""

import dataclasses
import pathlib

import pytest

from app.setting_rules import declared
from app.settings import ConfigError, Settings
from tests.support import SIGNING_KEY

TABLE = pathlib.Path(__file__).resolve().parent.parent / "docs" / "configuration.md"

NOT_SETTINGS = {"PROMETHEUS_MULTIPROC_DIR"}
"""Rows of the table read by a library (prometheus-client), not by Settings."""


def documented() -> list[dict]:
    rows = []
    for line in TABLE.read_text(encoding="utf-8").splitlines():
        if not line.startswith("| `"):
            continue
        variable, default, meaning = (cell.strip() for cell in line.strip("|").split(" | "))
        rows.append({"variable": variable.strip("`"), "default": default, "meaning": meaning})
    return rows


def test_the_configuration_table_is_the_declarations():
    rows = [row for row in documented() if row["variable"] not in NOT_SETTINGS]
    assert rows == declared(Settings)
    assert {row["variable"] for row in documented()} - {r["variable"] for r in rows} == (
        NOT_SETTINGS
    )


def test_every_setting_is_read_from_its_variable():
    defaults = Settings()
    for field in dataclasses.fields(Settings):
        variable = field.metadata["variable"]
        default = getattr(defaults, field.name)
        if isinstance(default, int):
            value: object = default + 7
        elif field.metadata["rate"]:
            value = "5/minute"
        elif field.metadata["schemes"]:
            value = f"{field.metadata['schemes'][-1]}://host.example/0"
        elif field.name == "signing_key":
            value = SIGNING_KEY
        elif field.name == "kek":
            value = "ab" * 32
        else:
            value = "a-secret-of-twenty-chars"
        environ = {variable: str(value)}
        if field.name == "database_url":  # PostgreSQL needs a subject key and a key store
            environ["REDACT_SUBJECT_KEY"] = "k" * 16
            environ["REDACT_KEYSTORE_URL"] = "postgresql://keys.example/0"
        if field.name in ("database_url", "keystore_url"):  # and key-encryption keys
            environ["REDACT_KEK"] = "cd" * 32
        assert getattr(Settings.from_env(environ), field.name) == value, variable


def bad_values(field: dataclasses.Field) -> list[str]:
    if field.metadata["least"] is not None:
        return [str(field.metadata["least"] - 1), "many"]
    if field.metadata["rate"]:
        return ["often"]
    if field.metadata["schemes"]:
        return ["ftp://host/0"]
    if field.name == "kek":
        return ["short", "ab" * 31]
    return ["short"]  # the subject key: at least 16 characters


# Any token is a valid token, any path a file name.
CHECKED = [f for f in dataclasses.fields(Settings) if f.name not in ("metrics_token", "kek_file")]


@pytest.mark.parametrize("field", CHECKED, ids=lambda f: f.metadata["variable"])
def test_a_bad_value_stops_start_up_naming_its_variable(field):
    for value in bad_values(field):
        with pytest.raises(ConfigError) as raised:
            Settings.from_env({field.metadata["variable"]: value})
        assert str(raised.value).startswith(field.metadata["variable"]), str(raised.value)


def test_secrets_are_masked_wherever_settings_are_printed():
    settings = Settings.from_env(
        {
            "REDACT_SUBJECT_KEY": "subject-key-0123456789",
            "REDACT_METRICS_TOKEN": "metrics-token-42",
            "REDACT_SIGNING_KEY": SIGNING_KEY,
            "RATELIMIT_STORAGE_URI": "redis://:hunter22@redis.example:6379/0",
        }
    )
    for printed in (repr(settings), str(settings.masked()), str(settings.report())):
        for secret in ("subject-key-0123456789", "metrics-token-42", "hunter22", "CxtlmMs54B0"):
            assert secret not in printed
    assert settings.masked()["REDACT_SUBJECT_KEY"] == "***"
    assert settings.masked()["RATELIMIT_STORAGE_URI"] == "redis://:***@redis.example:6379/0"
