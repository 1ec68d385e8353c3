"""Webhooks: endpoints, the outbox their events are written to in the transaction of their
cause, and delivering it. Built on models.store and models.records."""
