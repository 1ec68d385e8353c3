"""The ASGI application each worker process of `redact serve --workers N` serves."""

import sys

from app import create_app, logs
from app.settings import ConfigError

logs.configure()
try:
    app = create_app()
except ConfigError as exc:  # one clear line instead of a traceback per worker
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(3)  # STARTUP_FAILURE: the parent stops instead of starting it again (app/workers.py)
