"""Logging for the service processes: one line per record, the message as written (the
access log's lines are JSON already)."""

import logging
import sys


def configure(level: int = logging.INFO) -> None:
    """Send the service's log records to stderr, unless the process configured them."""
    logger = logging.getLogger("redact")
    if logger.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
