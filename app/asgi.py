"""The ASGI application the Procfile serves: `gunicorn app.asgi:app`."""

from . import create_app, logs

logs.configure()
app = create_app()
