"""Records coming in: the records API's schema (schema.py), storing them (storing.py),
reading one back (reading.py), and `redact transactions load` (loading.py). Built on
everything up to models.erasure (a record may be redacted on arrival)."""
