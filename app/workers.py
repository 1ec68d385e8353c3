"""`redact serve --workers N`: worker processes that share the connections evenly.

When every worker accepts from one shared listening socket (uvicorn's and gunicorn's
multi-worker modes), whichever worker wakes first takes every connection waiting: with 8
keep-alive connections opened at once against 2 workers, the split measured 2/6 in four
runs of six, so one worker served three quarters of the requests while the other idled
(bench/README.md, "Workers sharing the load"). libuv's single-accept mode only narrows it
(3/5 or 2/6 in half the runs). Here the parent process alone accepts, and hands each
connection to the ready worker holding the fewest open ones, as a file descriptor over a
Unix socket (SCM_RIGHTS); the worker takes it into its uvicorn server as if it had accepted
it. The hand-off costs the parent an accept and a send per connection, not per request.

A worker that dies is replaced; its connections end with it, as they would under any
supervisor, and what it acknowledged but had not finished writing is completed
(`on_lost`: the Redact API's pending scrubs, models/erasure/settling.py). One that exits
before it was ever ready with STARTUP_FAILURE (3: the app or its settings cannot start,
app/asgi.py) would fail again: the parent stops, and says so.
SIGTERM or SIGINT stops accepting and lets each worker finish its requests in flight
(uvicorn's graceful shutdown) before the parent returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import selectors
import signal
import socket
import threading
import time
from collections.abc import Callable
from multiprocessing.sharedctypes import RawArray
from typing import Any

import uvicorn

from app.server import GuardedHttpToolsProtocol, limit_malloc_arenas, settle_heap

logger = logging.getLogger("redact.workers")

SUPERVISE_SECONDS = 0.5
START_SECONDS = 30  # at most, for every worker to be ready before the first accept
STOP_SECONDS = 30  # a worker's graceful shutdown, at most, before it is killed
READY = b"r"
STARTUP_FAILURE = 3  # uvicorn's exit code for a worker that cannot start (app/asgi.py's too)


class StartupFailed(Exception):
    """A worker could not start; starting another would fail the same way."""


_spawn = multiprocessing.get_context("spawn")


class _Worker:
    """One worker process, the parent's end of its channel, and its count of connections
    handed to it (the worker counts those it has closed)."""

    def __init__(self, config: uvicorn.Config, index: int, closed: Any):
        self.index = index
        self.channel, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.channel.setblocking(False)  # a worker that does not read is passed over
        self.ready = False
        self.was_ready = False
        self.handed = 0
        closed[index] = 0
        self.process = _spawn.Process(
            target=_worker_main, args=(config, child, closed, index), name=f"worker-{index}"
        )
        self.process.start()
        child.close()


class Supervisor:
    """The parent process: accepts on `config`'s address, hands connections out, and
    keeps `workers` worker processes running."""

    def __init__(
        self, config: uvicorn.Config, workers: int, on_lost: Callable[[], object] | None = None
    ):
        """`on_lost` is called (on the supervising thread) once a worker that died has
        been replaced, and after the stop if a worker had to be killed."""
        self.config = config
        self.on_lost = on_lost
        self.count = workers
        self.closed = RawArray("q", workers)  # written by each worker, for itself
        self.workers: list[_Worker] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.failed: str | None = None

    def run(self) -> None:
        """Serve until SIGTERM or SIGINT; StartupFailed if a worker cannot start."""
        listener = self.config.bind_socket()
        listener.listen(self.config.backlog)
        listener.setblocking(False)
        previous = {
            sig: signal.signal(sig, lambda *_: self.stopping.set())
            for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            with self.lock:
                self.workers = [_Worker(self.config, i, self.closed) for i in range(self.count)]
            accepting = threading.Thread(
                target=self._accept, args=(listener,), name="accept", daemon=True
            )
            accepting.start()
            while not self.stopping.wait(SUPERVISE_SECONDS):
                if self._replace_dead():
                    self._lost()
            accepting.join()  # it stops within SUPERVISE_SECONDS
            listener.close()  # from here new connections are refused
            if not self._stop_all():
                self._lost()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            listener.close()
        if self.failed is not None:
            raise StartupFailed(self.failed)

    def _lost(self) -> None:
        if self.on_lost is not None:
            try:
                self.on_lost()
            except Exception:
                logger.exception("completing what a lost worker left failed")

    def _replace_dead(self) -> bool:
        """Start a worker in place of each that died; True if any did."""
        replaced = False
        with self.lock:
            for i, worker in enumerate(self.workers):
                if worker.process.is_alive() or self.stopping.is_set():
                    continue
                if not worker.was_ready and worker.process.exitcode == STARTUP_FAILURE:
                    self.failed = f"worker {i} could not start (exit {STARTUP_FAILURE})"
                    self.stopping.set()
                    return replaced
                logger.warning(
                    "worker %d (pid %s) exited with %s; starting another",
                    i,
                    worker.process.pid,
                    worker.process.exitcode,
                )
                self.workers[i] = _Worker(self.config, i, self.closed)
                replaced = True
        return replaced

    def _stop_all(self) -> bool:
        """Stop every worker; False if one had to be killed."""
        clean = True
        with self.lock:
            workers = list(self.workers)
        for worker in workers:
            if worker.process.is_alive():
                worker.process.terminate()  # SIGTERM: uvicorn's graceful shutdown
        for worker in workers:
            worker.process.join(STOP_SECONDS)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
                clean = False
            worker.channel.close()
        return clean

    def _accept(self, listener: socket.socket) -> None:
        """Accept connections and hand each to the least-loaded ready worker; learn which
        workers are ready (or gone) from their channels."""
        waiting: list[socket.socket] = []  # accepted while no worker was ready
        watched: set[socket.socket] = set()
        gone: set[socket.socket] = set()  # channels at their end, until their worker is replaced
        started, listening = time.monotonic(), False
        with selectors.DefaultSelector() as selector:
            while not self.stopping.is_set():
                with self.lock:
                    channels = {w.channel for w in self.workers}
                    all_ready = all(w.ready for w in self.workers)
                if not listening and (all_ready or time.monotonic() - started > START_SECONDS):
                    # at start, wait for every worker, so that none starts with them all
                    selector.register(listener, selectors.EVENT_READ)
                    listening = True
                for channel in watched - (channels - gone):
                    selector.unregister(channel)
                    watched.discard(channel)
                    if channel not in channels:
                        gone.discard(channel)
                        channel.close()  # its worker was replaced
                for channel in channels - gone - watched:
                    selector.register(channel, selectors.EVENT_READ)
                    watched.add(channel)
                for key, _ in selector.select(timeout=SUPERVISE_SECONDS):
                    if key.fileobj is listener:
                        with contextlib.suppress(BlockingIOError, InterruptedError):
                            waiting.append(listener.accept()[0])
                    elif not self._heard_from(key.fileobj):  # type: ignore[arg-type]
                        gone.add(key.fileobj)  # type: ignore[arg-type]
                while waiting and self._hand(waiting[0]):
                    waiting.pop(0).close()
        for connection in waiting:
            connection.close()

    def _heard_from(self, channel: socket.socket) -> bool:
        """Read a worker's message; False when its channel has ended (the worker is gone,
        and the supervisor replaces it)."""
        try:
            message = channel.recv(16)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            message = b""
        with self.lock:
            for worker in self.workers:
                if worker.channel is channel:
                    worker.ready = message == READY
                    worker.was_ready = worker.was_ready or worker.ready
        return bool(message)

    def _hand(self, connection: socket.socket) -> bool:
        """Give `connection` to the ready worker with the fewest open connections."""
        with self.lock:
            ready = [w for w in self.workers if w.ready]
            ready.sort(key=lambda w: (w.handed - self.closed[w.index], w.index))
            for worker in ready:
                try:
                    socket.send_fds(worker.channel, [b"c"], [connection.fileno()])
                except OSError:  # its channel is full or gone: the next one
                    continue
                worker.handed += 1
                return True
        return False


class _WorkerServer(uvicorn.Server):
    """uvicorn's server, taking its connections from the parent instead of a socket."""

    def __init__(self, config: uvicorn.Config, channel: socket.socket, closed: Any, index: int):
        super().__init__(config)
        self.channel = channel
        self.closed = closed
        self.index = index

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # the lifespan; no listening socket
        settle_heap()
        loop = asyncio.get_running_loop()
        self.channel.setblocking(False)
        loop.add_reader(self.channel.fileno(), self._receive, loop)
        self.channel.send(READY)

    def _receive(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            try:
                message, fds, _, _ = socket.recv_fds(self.channel, 16, 16)
            except (BlockingIOError, InterruptedError):
                return
            if not message:  # the parent has gone: stop as on SIGTERM
                loop.remove_reader(self.channel.fileno())
                self.should_exit = True
                return
            for fd in fds:
                sock = socket.socket(fileno=fd)
                loop.create_task(self._adopt(loop, sock))

    async def _adopt(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        try:
            await loop.connect_accepted_socket(self._protocol, sock)
        except OSError:  # the client left before it was taken in
            sock.close()
            self._connection_closed()

    def _protocol(self) -> asyncio.Protocol:
        protocol: GuardedHttpToolsProtocol = self.config.http_protocol_class(  # type: ignore[call-arg, assignment]
            config=self.config, server_state=self.server_state, app_state=self.lifespan.state
        )
        protocol.on_connection_lost = self._connection_closed
        return protocol

    def _connection_closed(self) -> None:
        self.closed[self.index] += 1


def _worker_main(config: uvicorn.Config, channel: socket.socket, closed: Any, index: int) -> None:
    limit_malloc_arenas()
    config.configure_logging()
    with contextlib.suppress(KeyboardInterrupt):
        _WorkerServer(config, channel, closed, index).run()
