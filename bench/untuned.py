"""The framework as it comes: a Connexion 3 FlaskApp with our spec and a handler that only
returns 204. Everything default: middleware list, validators, security handler."""

import pathlib

import connexion
from connexion.resolver import Resolver

SPEC = pathlib.Path(__file__).resolve().parent.parent / "openapi" / "redact.yml"


def redact_message(body):
    return None, 204


def basic_auth(username, password):
    return {"sub": username}


class _Resolver(Resolver):
    def resolve_function_from_operation_id(self, operation_id):
        return redact_message


class _Basic(connexion.security.BasicSecurityHandler):
    def _resolve_func(self, security_scheme):
        return basic_auth


app = connexion.FlaskApp(__name__, security_map={"basic": _Basic})
app.add_api(SPEC, resolver=_Resolver())
