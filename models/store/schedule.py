"""When PostgreSQL's maintenance runs (the worker's VACUUM of what redaction rewrote,
models/worker/maintenance.py), for the worker and for the receipts that name the next
run."""

from __future__ import annotations

import datetime

# When the worker runs it (models/worker/queue.py): daily at 03:15 UTC.
SCHEDULE_HOUR, SCHEDULE_MINUTE = 3, 15


def next_maintenance(now: datetime.datetime) -> datetime.datetime:
    """The next scheduled maintenance after `now`."""
    moment = now.astimezone(datetime.UTC).replace(
        hour=SCHEDULE_HOUR, minute=SCHEDULE_MINUTE, second=0, microsecond=0
    )
    return moment if moment > now else moment + datetime.timedelta(days=1)
