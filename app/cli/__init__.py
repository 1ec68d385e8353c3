"""The `redact` command. One module per command group:

- serve.py: `serve`, `worker`
- admin.py: `migrate`, `maintenance`, `config`
- accounts.py: `accounts create|rotate-secret`
- transactions.py: `transactions load`
- jobs.py: `jobs create|list|show|run|cancel`
- records.py: `policies show|set`, `holds create|list|show|release`, `retention run`
- proof.py: `audit verify`, `receipts verify`, `keys generate|list`
- webhooks.py: `webhooks create|list|show|delete`
- common.py: what they share (one-line errors, opening the store and the queue)
- progress.py: the long commands' progress on stderr (a bar on a terminal, else lines)

Every error is one line on stderr and a non-zero exit; nothing half-written is kept.
"""

from __future__ import annotations

import sys

import click

from app.cli.accounts import accounts
from app.cli.admin import config, maintenance, migrate
from app.cli.common import fail
from app.cli.erasure import suppressions
from app.cli.jobs import jobs
from app.cli.proof import audit, keys, receipts
from app.cli.records import holds, policies, retention
from app.cli.serve import serve, worker
from app.cli.transactions import transactions
from app.cli.webhooks import webhooks
from app.version import VERSION

ENVIRONMENT = """\b
The environment names what commands use (docs/configuration.md lists it all):
  DATABASE_URL           the store; default sqlite:///redact.db (current directory)
  REDACT_KEYSTORE_URL    the key store; default FILE.keystore beside an SQLite FILE
  REDACT_QUEUE_URL       the job queue; default FILE-queue beside an SQLite FILE
  RATELIMIT_STORAGE_URI  the rate limiter; default memory:// (per process)
  REDACT_SUBJECT_KEY     the phone-number index's key; default in FILE.key (SQLite)

Only serve, worker, migrate, accounts create and transactions load create a missing
store; the other commands say that it is missing."""

GROUP_EPILOG = (
    "The store is DATABASE_URL's (default sqlite:///redact.db, in the current directory); "
    "'redact --help' lists the other variables."
)


@click.group(epilog=ENVIRONMENT)
@click.version_option(VERSION, prog_name="redact", message="%(prog)s %(version)s")
def main():
    """Redact: a self-hostable, Vonage-compatible redaction service."""


for command in (
    serve,
    worker,
    migrate,
    maintenance,
    config,
    accounts,
    transactions,
    jobs,
    policies,
    holds,
    retention,
    audit,
    receipts,
    keys,
    webhooks,
    suppressions,
):
    main.add_command(command)
    command.epilog = command.epilog or GROUP_EPILOG


def run() -> None:
    """Console-script entry point: click's usage errors as one line, like ours."""
    try:
        code = main(standalone_mode=False)
    except click.exceptions.Abort:
        fail("aborted")
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.format_message(), err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        fail(exc.format_message(), exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
