"""What the two untuned baselines (untuned.py: FlaskApp, untuned_async.py: AsyncApp)
share: the spec, the basic-auth check, and the one thing a newcomer must add to run it.

The spec's operationId `redact-message` is no Python name, so Connexion's default
resolver cannot import it: a resolver sends every operation to the one handler. The spec
names no `x-basicInfoFunc`; Connexion's documented fallback, the BASICINFO_FUNC
environment variable, names the check instead.
"""

import os
import pathlib
from collections.abc import Callable

from connexion.resolver import Resolver

SPEC = pathlib.Path(__file__).resolve().parent.parent / "openapi" / "redact.yml"

os.environ.setdefault("BASICINFO_FUNC", f"{__name__}.basic_auth")


def basic_auth(username, password):
    return {"sub": username}


class OneHandler(Resolver):
    def __init__(self, handler: Callable):
        super().__init__()
        self.handler = handler

    def resolve_function_from_operation_id(self, operation_id):
        return self.handler


def untuned(app_class, handler: Callable):
    """`app_class` (FlaskApp or AsyncApp) as it comes, serving the spec with `handler`."""
    app = app_class(__name__)
    app.add_api(SPEC, resolver=OneHandler(handler))
    return app
