"""Records coming in: the records API's schema, storing and reading back (records.py), and
`redact transactions load` (loading.py). Built on everything up to models.erasure (a record
may be redacted on arrival)."""
