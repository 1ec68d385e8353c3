"""The ASGI application the Procfile serves: `gunicorn app.asgi:app`."""

import sys

from . import create_app

# The redaction path hands the GIL back and forth many times per request (event loop,
# WSGI thread, database calls that release it). With the default 5 ms switch interval a
# thread returning from the database can wait up to 5 ms behind a busy one, each time.
# sys.setswitchinterval(0.0005)

app = create_app()
