"""The ASGI application the Procfile serves: `gunicorn app.asgi:app`."""

from . import create_app

app = create_app()
