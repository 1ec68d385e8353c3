"""The framework as it comes: a Connexion 3 FlaskApp with our spec and a handler that only
returns 204. Everything default: middleware list, validators, security handler.

Needs Flask (`connexion[flask]`), which the service itself may not: see bench/run.py."""

import pathlib

import connexion
from connexion.resolver import Resolver

SPEC = pathlib.Path(__file__).resolve().parent.parent / "openapi" / "redact.yml"


def redact_message(body):
    return None, 204


def basic_auth(username, password):
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


app = connexion.FlaskApp(__name__, security_map={"basic": _Basic})
app.add_api(SPEC, resolver=_Resolver())
