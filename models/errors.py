"""Domain errors: what can stop a redaction, with the data to explain it. No HTTP here;
app/problems.py decides how each is rendered."""


class RedactionError(Exception):
    """Base of the domain's errors: those a redaction request can meet, and those of jobs
    (models/jobs/errors.py)."""


class Unprovisioned(RedactionError):
    def __init__(self, api_key: str, product: str):
        super().__init__(f"User={api_key} is not provisioned to redact product={product}")
        self.api_key, self.product = api_key, product


class RecordNotFound(RedactionError):
    def __init__(self, transaction_id: str, kind: str):
        super().__init__(f"ID '{transaction_id}' could not be found (type={kind})")
        self.transaction_id, self.kind = transaction_id, kind


class PrematureRedaction(RedactionError):
    def __init__(self, transaction_id: str, min_age_seconds: int, remaining_seconds: float):
        super().__init__(
            f"You must wait {_wait_phrase(min_age_seconds)} before redacting ID '{transaction_id}'"
        )
        self.transaction_id = transaction_id
        self.min_age_seconds = min_age_seconds
        self.remaining_seconds = remaining_seconds


class InvalidRecord(ValueError):
    """A record offered to the store is malformed; the message says which field and why."""


def _wait_phrase(seconds: int) -> str:
    if seconds % 60 == 0:
        minutes = seconds // 60
        return f"{minutes} minute" + ("" if minutes == 1 else "s")
    return f"{seconds} second" + ("" if seconds == 1 else "s")
