"""One module per contract's handlers: redact.py (openapi/redact.yml), jobs.py,
records.py, proof.py, webhooks.py. What Connexion validated in, one domain call, a
response out. The resolver (app/http/contracts.py) runs each plain `def` handler inside one
database connection, and passes the header parameters its operation declares."""
