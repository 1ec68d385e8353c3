"""What the service is built from, in one typed place: the settings, the clock, the open
store, the job queue and the jobs service. `create_app` and the `redact` commands build
them here, from the settings."""

from __future__ import annotations

import dataclasses

from app.settings import Settings
from models import Store, open_store, utcnow
from models.jobs.lease import WorkConfig
from models.jobs.service import JobLimits, JobsService
from models.store.base import Clock
from models.webhooks.delivery import DeliveryConfig
from models.worker.queue import JobQueue


@dataclasses.dataclass(frozen=True)
class Services:
    settings: Settings
    clock: Clock
    store: Store
    """The store the models work on: the same object as models.current_store()."""
    queue: JobQueue
    jobs: JobsService

    def close(self) -> None:
        """Close the queue's connections and the store (its writer thread, lock file and
        pooled connections)."""
        try:
            self.queue.close()
        finally:
            self.store.close()


def open_services(
    settings: Settings, clock: Clock = utcnow, *, store: Store | None = None
) -> Services:
    """Open the store (unless given, already open) and the job queue the settings name
    (neither is contacted yet: a service whose database is not up starts, and says so on
    /readyz)."""
    if store is None:
        store = open_store(
            settings.database_url,
            **settings.store_options(),
        )
    queue = job_queue(settings, clock)
    limits = JobLimits(
        max_active_jobs=settings.max_active_jobs, sync_max_records=settings.sync_max_records
    )
    return Services(settings, clock, store, queue, JobsService(queue, limits, clock))


def job_queue(settings: Settings, clock: Clock = utcnow) -> JobQueue:
    """The job queue the settings name, with the work's batch size and lease, and how its
    consumer delivers webhook events."""
    return JobQueue(
        settings.effective_queue_url,
        config=WorkConfig(
            min_age_seconds=settings.min_age_seconds,
            batch_size=settings.job_batch_size,
            lease_seconds=settings.job_lease_seconds,
        ),
        max_depth=settings.max_queue_depth,
        vacuum=not settings.on_sqlite,
        clock=clock,
        webhooks=DeliveryConfig(
            timeout_seconds=settings.webhook_timeout_seconds,
            retry_base_seconds=settings.webhook_retry_base_seconds,
            retry_max_seconds=settings.webhook_retry_max_seconds,
            give_up_seconds=settings.webhook_give_up_seconds,
            poll_seconds=settings.webhook_poll_seconds,
            allow_private=bool(settings.webhook_allow_private),
            threads=settings.webhook_threads,
        ),
    )
