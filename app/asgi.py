"""The ASGI application the Procfile serves: `gunicorn app.asgi:app`."""

import sys

from app import create_app, logs
from app.settings import ConfigError

logs.configure()
try:
    app = create_app()
except ConfigError as exc:  # one clear line instead of a traceback per worker
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(3)  # gunicorn's "worker failed to boot": the arbiter stops instead of retrying
