"""Where a webhook attempt may connect, and a connection that goes only there, within one
deadline.

`resolve` looks the host up once and refuses it if any address it resolves to is not
public: loopback, private, link-local, shared, multicast, reserved or unspecified, in
IPv4 or IPv6, including the IPv6 forms that carry an IPv4 address (IPv4-mapped, 6to4,
Teredo, NAT64's well-known prefix). `PinnedBackend` is an httpcore network backend that
connects to those checked addresses whatever host the request names, so a name whose DNS
answers differently to a second lookup (DNS rebinding) is never looked up again; TLS is
still started with the request's host name (SNI and certificate checks). Every socket
operation it does is bounded by what is left of the attempt's deadline, so a receiver
that trickles a byte at a time ends its attempt at the deadline.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import time
import typing

import httpcore

NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class Refused(Exception):
    """Events may not go to this host (the message says why)."""


def non_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether `ip`, or the IPv4 address an IPv6 form carries, is not a public unicast
    address."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and non_public(embedded):
            return True
    return not ip.is_global or ip.is_multicast


def resolve(host: str, port: int, *, allow_private: bool) -> list[str]:
    """The addresses of `host` an attempt may connect to, looked up once. Refused if it
    cannot be resolved, or if any of them is non-public and those are not allowed."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise Refused(f"cannot resolve {host}: {exc}"[:200]) from None
    addresses = list(dict.fromkeys(str(address[0]) for *_, address in found))
    if not allow_private:
        for address in addresses:
            if non_public(ipaddress.ip_address(address.split("%")[0])):
                raise Refused(f"refused: {host} is a non-public address ({address})")
    if not addresses:
        raise Refused(f"cannot resolve {host}: no address")
    return addresses


class PinnedBackend(httpcore.NetworkBackend):
    """Connects to `addresses` (in turn, until one answers), never to what the request's
    host resolves to now; every operation of the connection ends by `deadline` (a
    `time.monotonic()` value)."""

    def __init__(self, addresses: list[str], deadline: float, timeout: float):
        self.addresses = addresses
        self.deadline = deadline
        self.timeout = timeout
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        failure: Exception = httpcore.ConnectError(f"cannot connect to {host}")
        for address in self.addresses:
            try:
                with _bounded(self, httpcore.ConnectTimeout) as left:
                    stream = self._inner.connect_tcp(address, port, left, local_address)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
                continue
            return DeadlineStream(stream, self)
        raise failure

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("webhooks are sent over TCP only")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read, write and TLS handshake ends by the deadline."""

    def __init__(self, stream: httpcore.NetworkStream, backend: PinnedBackend):
        self._stream = stream
        self._backend = backend

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        with _bounded(self._backend, httpcore.ReadTimeout) as left:
            return self._stream.read(max_bytes, left)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        with _bounded(self._backend, httpcore.WriteTimeout) as left:
            self._stream.write(buffer, left)

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        with _bounded(self._backend, httpcore.ConnectTimeout) as left:
            stream = self._stream.start_tls(ssl_context, server_hostname, left)
        return DeadlineStream(stream, self._backend)

    def get_extra_info(self, info: str) -> typing.Any:
        return self._stream.get_extra_info(info)


@contextlib.contextmanager
def _bounded(
    backend: PinnedBackend, timeout: type[httpcore.TimeoutException]
) -> typing.Iterator[float]:
    """What is left of the attempt's deadline, for one operation; `timeout`, saying so, if
    nothing is left or the operation outlasts it."""
    passed = f"no answer within the attempt's {backend.timeout:g} s deadline"
    left = backend.deadline - time.monotonic()
    if left <= 0:
        raise timeout(passed)
    try:
        yield left
    except httpcore.TimeoutException:
        raise timeout(passed) from None
