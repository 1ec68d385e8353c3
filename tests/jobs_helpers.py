"""Driving the jobs API in tests: a client, an account, and the app's real queue, whose
tasks the test runs (`drain`) at the moment it chooses, by the test's clock."""

from __future__ import annotations

import dataclasses

from models import Transaction, database

JOBS = "/v1/redact/jobs"


@dataclasses.dataclass
class JobsClient:
    client: object
    headers: dict
    queue: object

    def create(self, transactions=(), subjects=(), expect: int = 200, headers=None, **fields):
        objects = {}
        if transactions:
            objects["transactions"] = [
                t if isinstance(t, dict) else {"id": t, "product": "sms"} for t in transactions
            ]
        if subjects:
            objects["subjects"] = list(subjects)
        response = self.client.post(
            JOBS, json={"objects": objects, **fields}, headers={**self.headers, **(headers or {})}
        )
        assert response.status_code == expect, response.text
        return response.json()

    def get(self, job_id: str, expect: int = 200, **params):
        response = self.client.get(f"{JOBS}/{job_id}", params=params, headers=self.headers)
        assert response.status_code == expect, response.text
        return response.json()

    def action(self, job_id: str, action: str, expect: int | None = None, **body):
        response = self.client.post(
            f"{JOBS}/{job_id}/{action}", json=body or None, headers=self.headers
        )
        if expect is not None:
            assert response.status_code == expect, response.text
        return response

    def update(self, job_id: str, expect: int = 200, **body):
        response = self.client.post(f"{JOBS}/{job_id}", json=body, headers=self.headers)
        assert response.status_code == expect, response.text
        return response.json()

    def errors(self, job_id: str, **params):
        response = self.client.get(
            f"{JOBS}/{job_id}/validation_errors", params=params, headers=self.headers
        )
        assert response.status_code == 200, response.text
        return response.json()

    def drain(self) -> int:
        """Run what the queue holds (and what is scheduled by now), as a worker would."""
        return self.queue.drain()

    def ready(self, transactions=(), subjects=(), **fields):
        """A job created and validated, expected ready."""
        job = self.create(transactions, subjects, **fields)
        self.drain()
        job = self.get(job["id"])
        assert job["status"] == "ready", (job, self.errors(job["id"]))
        return job


def row(transaction_id: str) -> Transaction:
    with database.connection_context():
        return Transaction.get_by_id(transaction_id)
