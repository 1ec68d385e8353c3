"""One module per contract's handlers: redact.py (openapi/redact.yml), jobs.py,
records.py, proof.py, webhooks.py. What Connexion validated in, one domain call, a
response out."""
