"""Erasing: redacting records in batches (redaction.py), legal holds that stop it
(holds.py), Auto-redact policies and the retention pass (retention.py), and the audit trail
of policy and hold changes (audit.py). Built on store, records, proof and webhooks."""
