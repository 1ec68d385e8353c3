"""The framework as it comes, async: a Connexion 3 AsyncApp with our spec and a handler
that only returns 204. Everything default: middleware list, validators, security handler.

The handler is `async def`, as Connexion recommends for an AsyncApp (a plain `def` would
run in a thread pool). Needs no Flask."""

import connexion

from bench.untuned_common import untuned


async def redact_message(body):
    return None, 204


app = untuned(connexion.AsyncApp, redact_message)
