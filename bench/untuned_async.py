"""The async framework as it comes: a Connexion 3 AsyncApp with our spec and a handler that
only returns 204. Everything default: middleware list, validators, security handler.

The handler and the basic-auth function are `async def`, as Connexion recommends for an
AsyncApp (a plain `def` would be run in a thread pool). Needs no Flask."""

import pathlib

import connexion
from connexion.resolver import Resolver

SPEC = pathlib.Path(__file__).resolve().parent.parent / "openapi" / "redact.yml"


async def redact_message(body):
    return None, 204


async def basic_auth(username, password):
    return {"sub": username}


class _Resolver(Resolver):
    # The spec's operationId `redact-message` is no Python name, so the default resolver
    # cannot import it: every operation goes to the one handler.
    def resolve_function_from_operation_id(self, operation_id):
        return redact_message


class _Basic(connexion.security.BasicSecurityHandler):
    # The spec names no x-basicInfoFunc for Connexion to import: this hands it the check.
    def _resolve_func(self, security_scheme):
        return basic_auth


app = connexion.AsyncApp(__name__, security_map={"basic": _Basic})
app.add_api(SPEC, resolver=_Resolver())
