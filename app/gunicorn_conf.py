"""gunicorn settings for the Procfile's web process (`-c app/gunicorn_conf.py`).

Metrics from several workers are summed through files in PROMETHEUS_MULTIPROC_DIR
(prometheus-client's multiprocess mode). It must be set before anything imports
prometheus_client, so it is set here, in the master, to a fresh directory unless the
environment names one; a named one is emptied at start, so counts do not carry over from an
earlier run.

Give this file by its path, not as `python:app.gunicorn_conf`: importing it as a module
would import the `app` package, and with it prometheus_client, before the directory is set,
and every worker would then count in memory only, each its own.
"""

import os
import pathlib
import tempfile

_directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _directory:
    pathlib.Path(_directory).mkdir(parents=True, exist_ok=True)
    for stale in pathlib.Path(_directory).glob("*.db"):
        stale.unlink()
else:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="redact-metrics-")

worker_class = "app.server.Worker"  # uvicorn's, with a deadline for slow clients


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_fork(server, worker):
    from app.server import limit_malloc_arenas  # in the worker: the directory is set

    limit_malloc_arenas()
