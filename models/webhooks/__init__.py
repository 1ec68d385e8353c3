"""Webhooks: the tables (rows.py), an account's endpoints (endpoints.py), the outbox their
events are written to in the transaction of their cause (outbox.py), sending one event
(sending.py) and delivering the outbox (delivery.py). Built on models.store and
models.records."""
