"""`redact transactions`: load records into the store."""

from __future__ import annotations

import click

from app.cli.common import fail, load_settings, open_store_or_exit
from app.cli.progress import Progress
from models import InvalidRecord, load_records


@click.group()
def transactions():
    """Manage the transaction store."""


@transactions.command("load")
@click.argument("file", type=click.File("r", encoding="utf-8"))
def transactions_load(file):
    """Load JSON Lines records from FILE ('-' for stdin), all or nothing."""
    settings = load_settings()
    open_store_or_exit(settings)
    try:
        total = _lines_in(file)
        with Progress("loaded", "records", seconds=settings.progress_seconds, total=total) as shown:
            counts = load_records(file, shown.update)
    except InvalidRecord as exc:
        fail(f"{exc}; nothing was loaded")
    except UnicodeDecodeError:
        fail(f"{file.name}: not UTF-8 text; nothing was loaded")
    for number, fields in counts.refused:
        click.echo(
            f"line {number}: refused: its {', '.join(fields)} number is suppressed", err=True
        )
    count = counts.received - len(counts.refused)
    line = f"loaded {count} transaction{'s' if count != 1 else ''}"
    if counts.unchanged or counts.redacted_on_arrival:
        line += (
            f" ({counts.stored} stored, {counts.unchanged} already stored, "
            f"{counts.redacted_on_arrival} redacted on arrival)"
        )
    if counts.refused:
        line += f"; refused {len(counts.refused)} carrying a suppressed number"
    click.echo(line)


def _lines_in(file) -> int | None:
    """The records in a file that can be read twice (not a pipe), for the progress bar."""
    if not file.seekable():
        return None
    count = sum(1 for line in file if line.strip())
    file.seek(0)
    return count
