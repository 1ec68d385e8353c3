"""The HTTP edge: the outermost middleware (edge.py), admission (admission.py), basic
auth (auth.py) and the rate limit (ratelimit.py), request validation (validation.py), the
direct path for the hot operations (direct.py), the contracts and their routing
(contracts.py), and the error catalogue (problems.py)."""
