"""The front path (app/http/front.py) answers the common redaction before Connexion's
stack, and nothing a client can observe tells the two ways apart."""

from __future__ import annotations

import datetime
import json

from tests.support import START, add_account, add_records, basic, record

URL = "/v1/redact/transaction"

# Every kind of answer the operation has; each request is sent twice in a row, so that the
# second meets cached credentials (the front path) where the cache is on.
REQUESTS = [
    ({"id": "F1", "product": "sms", "type": "outbound"}, None),  # 204
    ({"id": "F1", "product": "sms"}, None),  # 204: already redacted, `type` defaulted
    ({"id": "F2", "product": "voice", "extra": 1}, None),  # 204: more properties are allowed
    ({"id": "NOPE", "product": "sms"}, None),  # 404 (MT)
    ({"id": "F3", "product": "sms", "type": "inbound"}, None),  # 404: an outbound record (MO)
    ({"id": "F4", "product": "sms"}, None),  # 403: premature
    ({"id": "F5", "product": "messages"}, None),  # 403: not provisioned
    ({"id": "F3", "product": "sms-x"}, None),  # 422: no such product
    ({"product": "sms"}, None),  # 422: no id
    ({"id": 7, "product": "sms"}, None),  # 422: not a string
    ({"id": "F3", "product": "sms", "type": "sideways"}, None),  # 422: no such type
    ("[1, 2]", None),  # 422: not an object
    ('{"id": "F3", "product": ', None),  # 422: not JSON
    (b'{"id": "\xff", "product": "sms"}', None),  # 422: not UTF-8
    ('{"id": "\\ud800", "product": "sms"}', None),  # 422: an unpaired surrogate
    ({"id": "F3", "product": "sms"}, "text/plain"),  # what Connexion says of the type
    ({"id": "F3\x00", "product": "sms"}, None),  # 404: NUL in an id
]


def exchange(client, headers, requests) -> list[tuple]:
    """What a client sees of every request, twice each, then of wrong credentials."""
    seen = []
    for body, content_type in requests:
        for _ in range(2):
            if isinstance(body, dict) and content_type is None:
                response = client.post(URL, json=body, headers=headers)
            else:
                raw = json.dumps(body) if isinstance(body, dict) else body
                sent = {**headers, "Content-Type": content_type or "application/json"}
                response = client.post(URL, content=raw, headers=sent)
            seen.append(observed(response))
    wrong = basic("acct0001", "wrong")
    seen.append(observed(client.post(URL, json={"id": "F1", "product": "sms"}, headers=wrong)))
    return seen


def observed(response) -> tuple:
    body = response.json() if response.content else None
    if isinstance(body, dict):
        body.pop("instance", None)  # the request's own trace id
    headers = {
        name: value
        for name, value in response.headers.items()
        if name in ("content-type", "retry-after", "www-authenticate", "ratelimit-policy")
    }
    return response.status_code, body, headers


def scenario(
    make_app, tmp_path, name: str, cache_seconds: int, requests=REQUESTS, limit="100/minute"
) -> list[tuple]:
    app = make_app(
        f"sqlite:///{tmp_path / name}", credential_cache_seconds=cache_seconds, rate_limit=limit
    )
    headers = add_account("acct0001", products=("sms", "voice"))
    add_records(
        record("F1"),
        record("F2", product="voice"),
        record("F3"),
        record("F4", age=datetime.timedelta(minutes=5), now=START),
    )
    with app.test_client() as client:
        return exchange(client, headers, requests)


def test_the_front_path_answers_as_connexion_does(make_app, tmp_path):
    through_front = scenario(make_app, tmp_path, "front.db", cache_seconds=300)
    through_connexion = scenario(make_app, tmp_path, "connexion.db", cache_seconds=0)
    statuses = {status for status, _, _ in through_front}
    assert {204, 401, 403, 404, 422} <= statuses, statuses
    for index, (front, connexion) in enumerate(zip(through_front, through_connexion, strict=True)):
        assert front == connexion, (index, front, connexion)


def test_an_account_over_its_limit_gets_the_same_429_either_way(make_app, tmp_path):
    requests = [({"id": "F3", "product": "sms"}, None)] * 3  # 6 requests, 4 a minute
    through_front = scenario(make_app, tmp_path, "front.db", 300, requests, "4/minute")
    through_connexion = scenario(make_app, tmp_path, "connexion.db", 0, requests, "4/minute")
    assert [status for status, _, _ in through_front] == [204] * 4 + [429] * 2 + [401]
    assert through_front == through_connexion
