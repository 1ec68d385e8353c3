"""Domain errors: what can stop a redaction, with the data to explain it. No HTTP here;
app/http/problems.py decides how each is rendered."""


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


class RecordHeld(RedactionError):
    """A legal hold covers the record: nothing redacts it until the hold is released."""

    def __init__(self, transaction_id: str):
        super().__init__(
            f"ID '{transaction_id}' is under a legal hold and cannot be redacted until it is "
            "released"
        )
        self.transaction_id = transaction_id


class InvalidRecord(ValueError):
    """A record offered to the store is malformed; the message says which field and why."""


class InvalidRecords(RedactionError):
    """Records offered to the store are malformed: `errors` lists (index, field, message)
    for each problem (the first `MAX_LISTED`), `count` how many there were."""

    MAX_LISTED = 100

    def __init__(self, errors: list[tuple[int, str, str]], count: int):
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"{count} {noun} in the records; nothing was stored")
        self.errors, self.count = errors[: self.MAX_LISTED], count


class RecordConflict(RedactionError):
    """A record names an id the account already holds (or names twice) with other content."""

    def __init__(self, transaction_id: str):
        super().__init__(
            f"ID '{transaction_id}' is already stored with other content; nothing was stored"
        )
        self.transaction_id = transaction_id


class HoldNotFound(RedactionError):
    def __init__(self, hold_id: str):
        super().__init__(f"No hold with id '{hold_id}'")
        self.hold_id = hold_id


class InvalidHold(RedactionError):
    """A hold request that cannot be honoured as written (a number that is no number)."""


class InvalidPolicy(RedactionError):
    """A retention policy change that cannot be honoured as written."""


class NoSigningKey(RedactionError):
    """Signing is needed and the store has no signing key (PostgreSQL without
    REDACT_SIGNING_KEY)."""

    def __init__(self):
        super().__init__("no signing key: set REDACT_SIGNING_KEY (`redact keys generate`)")


class NoReceipt(RedactionError):
    """There is nothing to prove yet: the record is not redacted, the job not finished,
    or the redaction predates the erasure log."""


class InvalidLogRange(RedactionError):
    """A log position or tree size outside the account's log."""


class WebhookNotFound(RedactionError):
    def __init__(self, webhook_id: str):
        super().__init__(f"No webhook with id '{webhook_id}'")
        self.webhook_id = webhook_id


class InvalidWebhook(RedactionError):
    """A webhook endpoint that cannot be registered as written."""


class TooManyWebhooks(RedactionError):
    """The account has as many endpoints as it may (models/webhooks.MAX_ENDPOINTS)."""

    def __init__(self, most: int):
        super().__init__(f"an account has at most {most} webhook endpoints: delete one first")


class InvalidCursor(RedactionError):
    def __init__(self, parameter: str, value: str):
        super().__init__(f"{parameter}: no such object {value!r} in this list")


def _wait_phrase(seconds: int) -> str:
    if seconds % 60 == 0:
        minutes = seconds // 60
        return f"{minutes} minute" + ("" if minutes == 1 else "s")
    return f"{seconds} second" + ("" if seconds == 1 else "s")


class KeyStoreUnusable(RedactionError):
    """The key store holds what this process's key-encryption keys cannot unwrap (REDACT_KEK
    or REDACT_KEK_FILE is not the one the key store was written with)."""

    def __init__(self, what: str):
        super().__init__(
            f"the key store's {what} cannot be unwrapped with the key-encryption keys given "
            "(REDACT_KEK, REDACT_KEK_FILE)"
        )


class SuppressionNotFound(RedactionError):
    def __init__(self, suppression_id: str):
        super().__init__(f"No suppression with id '{suppression_id}'")
        self.suppression_id = suppression_id


class InvalidSuppression(RedactionError):
    """A suppression request that names no phone number."""


class RecordsSuppressed(InvalidRecords):
    """Every record of a request carries a suppressed number: an error per field that
    carries one, naming the field, never the number."""

    def __init__(self, refused: list[tuple[int, list[str]]]):
        errors = [
            (index, field, "the number is suppressed by this account")
            for index, fields in refused
            for field in fields
        ]
        super().__init__(errors, len(errors))
        noun = "record carries" if len(refused) == 1 else "records carry"
        self.args = (f"{len(refused)} {noun} a suppressed number; nothing was stored",)
