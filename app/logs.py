"""Logging for the service processes: one JSON object per line, on stderr.

A line is `{"time", "level", "logger", "event" or "message", ...fields}`. Structured
events (`event(name, **fields)`: a request, a job transition, the configuration at
start-up) carry their fields; other records their message.

No line may carry personal data, at any level. Messages and fields are written by this
code base, which logs ids, statuses and counts, never a body, number or text. The one
way data could leak is an exception's message (a database error can quote the values
of a statement), so an exception is logged as its type and the code locations of its
traceback, never its message.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback

events = logging.getLogger("redact.events")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if fields is not None:
            line["event"] = record.getMessage()
            line.update(fields)
        else:
            line["message"] = record.getMessage()
        if record.exc_info and record.exc_info[0] is not None:
            line["exception"] = exception_summary(record.exc_info[1])
        return json.dumps(line, default=str)


def exception_summary(exc: BaseException) -> dict:
    """An exception without its message: its type and where it passed."""
    frames = traceback.extract_tb(exc.__traceback__)
    return {
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "stack": [
            f"{frame.filename.rsplit('/site-packages/', 1)[-1]}:{frame.lineno} {frame.name}"
            for frame in frames[-8:]
        ],
    }


def event(name: str, level: int = logging.INFO, **fields) -> None:
    """Log a structured event: `name` and its fields, one JSON line."""
    events.log(level, name, extra={"fields": fields})


QUIET = {"peewee": logging.WARNING}
"""Libraries whose lower levels carry data: peewee logs every statement with its
parameters at DEBUG. Capped here, whatever level the root logger is given."""


def quiet_libraries() -> None:
    for name, least in QUIET.items():
        logging.getLogger(name).setLevel(least)


def configure(level: int = logging.INFO) -> None:
    """Send the service's records (and the job queue's warnings) to stderr as JSON lines,
    unless the process configured them."""
    quiet_libraries()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name, name_level in (("redact", level), ("huey", logging.WARNING)):
        logger = logging.getLogger(name)
        if logger.handlers:
            continue
        logger.addHandler(handler)
        logger.setLevel(name_level)
        logger.propagate = False
