"""What the service is built from, in one typed place: the settings, the clock, the open
store, the job queue and the jobs service. `create_app` and the `redact` commands build
them here, from the settings."""

from __future__ import annotations

import dataclasses

from models import Store, open_store, utcnow
from models.base import Clock
from models.jobs import JobLimits, JobQueue, JobsService, WorkConfig

from .settings import Settings


@dataclasses.dataclass(frozen=True)
class Services:
    settings: Settings
    clock: Clock
    store: Store
    queue: JobQueue
    jobs: JobsService


def open_services(settings: Settings, clock: Clock = utcnow) -> Services:
    """Open the store and the job queue the settings name (neither is contacted yet: a
    service whose database is not up starts, and says so on /readyz)."""
    store = open_store(settings.database_url, subject_key=settings.subject_key_bytes)
    queue = job_queue(settings, clock)
    return Services(settings, clock, store, queue, jobs_service(settings, queue, clock))


def job_queue(settings: Settings, clock: Clock = utcnow) -> JobQueue:
    """The job queue the settings name, with the work's batch size and lease."""
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
    )


def jobs_service(settings: Settings, queue: JobQueue, clock: Clock = utcnow) -> JobsService:
    return JobsService(
        queue,
        JobLimits(
            max_active_jobs=settings.max_active_jobs, sync_max_records=settings.sync_max_records
        ),
        clock,
    )
