"""The HTTP edge, in the order a request meets it: the outermost middleware (edge.py) and
the request's state (state.py), basic auth (auth.py), the account gate (gate.py: the rate
limit of ratelimit.py, the admission of admission.py), request validation
(validation.py), the direct path for the hot operations (direct.py); the contracts, their
routing and resolver (contracts.py), and the error catalogue (problems.py)."""
