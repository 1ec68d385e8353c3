"""`redact audit verify`, `redact receipts verify` and `redact keys`: checking the
erasure log and receipts (models/proof/check.py, models/proof/receipts.py), and the signing key
(models/proof/signing.py); `redact receipts backfill` logs the records redacted before the
log existed (models/erasure/backfill.py)."""

from __future__ import annotations

import json
import pathlib
import sys
import urllib.error
import urllib.request

import click

from app.cli.common import account_or_exit, existing_store_or_exit, fail, load_settings
from app.cli.progress import Progress
from models import database, utcnow
from models.erasure.backfill import backfill, to_backfill
from models.proof.check import accounts, check_log
from models.proof.heads import HEAD_TYPE
from models.proof.receipts import verify_receipt
from models.proof.signing import key_set, listed_keys, verify
from models.store.keys import SigningKey


@click.group()
def audit():
    """Check the erasure log."""


@audit.command("verify")
@click.option(
    "--keys",
    "keys_from",
    help="Check the tree heads with these public keys (a JWK set file, or the URL of GET"
    " /v1/redact/keys) rather than the ones the database lists, which whoever could"
    " rewrite the log could rewrite too.",
)
@click.option(
    "--heads",
    "heads_from",
    type=click.Path(dir_okay=False),
    help="Tree heads kept outside the database (the `signature` of GET /v1/redact/log/"
    "tree-head, one a line): the log must still match each.",
)
def audit_verify(keys_from, heads_from):
    """Recompute every account's log from its stored entries and check every signed tree
    head; names the first entry altered, removed or inserted, and exits 1 if any is."""
    store = existing_store_or_exit(load_settings())
    faults = 0
    with database.connection_context():
        keys = key_set(_keys_from(keys_from) if keys_from else listed_keys(store.signing_key))
        kept = _kept_heads(heads_from, keys) if heads_from else []
        for api_key in accounts():
            report = check_log(api_key, keys, kept)
            if report.problem is None:
                click.echo(f"{api_key}: {report.entries} entries, {report.heads} tree heads: ok")
            else:
                faults += 1
                click.echo(f"error: {api_key}: {report.problem}", err=True)
    if faults:
        raise SystemExit(1)


def _kept_heads(path: str, keys) -> list[dict]:
    """The signed documents of the tree heads in `path`; one line and exit 1 if one's
    signature does not verify."""
    heads = []
    for number, line in enumerate(_read(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            header, document = verify(line.strip(), keys)
        except ValueError as exc:
            fail(f"{path}, line {number}: {exc}")
        if header.get("typ") != HEAD_TYPE:
            fail(f"{path}, line {number}: not a tree head")
        heads.append(document)
    return heads


@click.group()
def receipts():
    """Check receipts."""


@receipts.command("verify")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--keys",
    "keys_from",
    help="The public keys: a JWK set file, or the URL of GET /v1/redact/keys. Default: the"
    " keys of the store the environment names.",
)
def receipts_verify(file, keys_from):
    """Verify a receipt offline: its signature, the tree head's, and the inclusion proof
    of its log entry. FILE holds the receipt (the JWS, or the API's JSON answer)."""
    token = _receipt_token(sys.stdin.read() if file == "-" else _read(file))
    if keys_from:
        keys = _keys_from(keys_from)
    else:
        store = existing_store_or_exit(load_settings())
        with database.connection_context():
            keys = listed_keys(store.signing_key)
    try:
        document = verify_receipt(token, keys)
    except (ValueError, KeyError, TypeError) as exc:
        fail(f"the receipt does not verify: {exc}")
    log = document["log"]
    what = (
        f"record {document['record']['id']}"
        if document["receipt"] == "record"
        else f"job {document['job']['id']} ({document['records']['count']} records)"
    )
    click.echo(
        f"valid: {what} of {document['account']}, log entry {log['index']} of"
        f" {log['tree_size']}, erasure {document['erasure']['status']}"
    )


@receipts.command("backfill")
@click.option(
    "--account", "api_key", help="Only this account's records (default: every account's)."
)
def receipts_backfill(api_key):
    """Log the records redacted before the erasure log existed, so that their receipts can
    be issued: each gets a `redaction` entry that says it was written after the fact
    (`backfilled`: true, `at` when it was written). A second run appends nothing."""
    settings = load_settings()
    existing_store_or_exit(settings)
    with database.connection_context():
        if api_key is not None:
            account_or_exit(api_key)
        counts = to_backfill(api_key)
        total = sum(counts.values())
        done: dict[str, int] = {}
        with Progress("logged", "records", seconds=settings.progress_seconds, total=total) as shown:
            for account in counts:
                before = sum(done.values())

                def update(count: int, before: int = before) -> None:
                    shown.update(before + count)

                done[account] = backfill(account, utcnow, progress=update)
    click.echo(json.dumps({"backfilled": sum(done.values()), "accounts": done}, indent=2))


def _read(path: str) -> str:
    try:
        return pathlib.Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {path}: {exc}")


def _receipt_token(text: str) -> str:
    text = text.strip()
    if text.startswith("{"):
        try:
            return str(json.loads(text)["receipt"])
        except (ValueError, KeyError, TypeError):
            fail("the file holds JSON without a `receipt`")
    return text


def _keys_from(source: str) -> list[dict]:
    try:
        if source.startswith(("http://", "https://")):
            with urllib.request.urlopen(source, timeout=10) as answer:
                text = answer.read().decode()
        else:
            text = pathlib.Path(source).read_text()
        keys = json.loads(text)["keys"]
        if not isinstance(keys, list):
            raise TypeError
        return keys
    except (OSError, urllib.error.URLError) as exc:
        fail(f"cannot read the keys from {source}: {exc}")
    except (ValueError, KeyError, TypeError):
        fail(f"{source} holds no JWK set")


@click.group()
def keys():
    """The signing key of tree heads and receipts; the key store's key-encryption keys."""


@keys.command("generate")
def keys_generate():
    """Print a new Ed25519 private key (a JWK) for REDACT_SIGNING_KEY."""
    click.echo(SigningKey.generate().export())


@keys.command("list")
def keys_list():
    """The public keys, as GET /v1/redact/keys answers them (a JWK set)."""
    store = existing_store_or_exit(load_settings())
    with database.connection_context():
        click.echo(json.dumps({"keys": listed_keys(store.signing_key)}, indent=2))
