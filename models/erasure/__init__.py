"""Erasing: redacting records in batches (redaction.py), what every redaction writes, the
scrubbed values, its audit row and its log entry (scrub.py), legal holds that stop it
(held.py: their tables and checks; holds.py: creating and releasing them), Auto-redact
policies (policies.py) and the retention pass (retention.py), and the audit trail of
policy and hold changes (audit.py). Built on store, records, proof and webhooks."""
