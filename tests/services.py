"""Real servers the fault tests can stop and start: a private PostgreSQL cluster and a
private Redis, each on its own port, so stopping them leaves the machine's own alone; and
the service itself under gunicorn, as the Procfile runs it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import IN_CI, wait_until_serving

# by its path, as the Procfile gives it (the file says why)
GUNICORN_CONF = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "app", "gunicorn_conf.py"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float = 60, interval: float = 0.05):
    """Poll `predicate` until it returns something true, and return that; fail the test
    after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out")


def _missing(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} is needed for this test in CI")
    pytest.skip(f"{what} is not available")


def _postgres_bin() -> str | None:
    root = "/usr/lib/postgresql"
    if not os.path.isdir(root):
        return None
    versions = sorted(os.listdir(root), key=lambda v: int(v) if v.isdigit() else 0)
    return os.path.join(root, versions[-1], "bin") if versions else None


class PrivatePostgres:
    """A PostgreSQL cluster of its own in a temporary directory, run as the `postgres`
    user when the tests run as root (PostgreSQL refuses root)."""

    def __init__(self):
        self.bin = _postgres_bin()
        if self.bin is None:
            _missing("PostgreSQL's server programs (/usr/lib/postgresql)")
        self.port = free_port()
        self.directory = tempfile.mkdtemp(prefix="redact-pg-")
        self.data = os.path.join(self.directory, "data")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres")
        self._run("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync")

    def _run(self, program: str, *args: str, check: bool = True) -> None:
        command = [os.path.join(self.bin, program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=check, capture_output=True, timeout=60)

    def start(self) -> None:
        self._run(
            "pg_ctl",
            "-D",
            self.data,
            "-w",
            "-l",
            os.path.join(self.directory, "log"),
            "-o",
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        )

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server; `immediate` is a crash: no shutdown checkpoint."""
        self._run("pg_ctl", "-D", self.data, "-w", "-m", mode, "stop")

    def destroy(self) -> None:
        self._run("pg_ctl", "-D", self.data, "-m", "immediate", "stop", check=False)
        shutil.rmtree(self.directory, ignore_errors=True)


class PrivateRedis:
    """A Redis server of its own, keeping nothing on disk (as the machine's Redis)."""

    def __init__(self):
        self.program = shutil.which("redis-server")
        if self.program is None:
            _missing("redis-server")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.program,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        """Kill the server (SIGKILL): its data is gone, as with a Redis that keeps none."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=30)
            self.process = None


def run_cli(env: dict, *args: str, input: str | None = None) -> str:
    """`redact ARGS` with `env` added to the environment; its output, or a failed test."""
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env={**os.environ, **env},
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


class Service:
    """The service as the Procfile runs it: the release step, then gunicorn."""

    def __init__(self, env: dict, cwd, workers: int = 1):
        self.env = {**os.environ, **env}
        self.cwd = cwd
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Service:
        subprocess.run(
            [sys.executable, "-m", "app.cli", "migrate"],
            env=self.env,
            check=True,
            timeout=60,
            cwd=self.cwd,
        )
        with open(os.path.join(self.cwd, "gunicorn.log"), "wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "app.asgi:app",
                    "-c",
                    GUNICORN_CONF,
                    "--workers",
                    str(self.workers),
                    "--bind",
                    f"127.0.0.1:{self.port}",
                ],
                env=self.env,
                cwd=self.cwd,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        wait_until_serving(self.process, self.base)
        return self

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)

    def worker_pids(self) -> list[int]:
        children = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True
        ).stdout.split()
        return [int(pid) for pid in children]


# Metrics, as a scrape of /metrics shows them.

TOKEN = "scrape-token-0123"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def samples(text: str) -> dict:
    """{(name, ((label, value), ...)): value} of a scrape."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(scrape: dict, name: str, **labels) -> float:
    return scrape.get((name, tuple(sorted(labels.items()))), 0.0)
