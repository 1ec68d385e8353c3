"""The framework the service was first built on, as it comes: a Connexion 3 FlaskApp with
our spec and a handler that only returns 204. Everything default: middleware list,
validators, security handler.

Needs Flask (`pip install -e '.[bench]'`), which the service itself does not."""

import connexion

from bench.untuned_common import untuned


def redact_message(body):
    return None, 204


app = untuned(connexion.FlaskApp, redact_message)
