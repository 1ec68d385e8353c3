"""How many requests a process works on at once, shared fairly between accounts.

A request takes a place only once it is authenticated and its account's rate limit has
admitted it, so the limiter's 429 always comes first, and a place costs no thread (a
redaction awaits its group commit on the event loop). Below `capacity` places in use,
every admitted request gets one. At capacity, a request is shed (503) only if its
account already holds its fair share, `capacity` divided by the accounts holding
places: an account bursting, within its limit or beyond it, sheds its own requests,
never another account's. Under a real overload of many accounts each keeps its share and
the process sheds the rest at once, instead of queueing work it cannot finish in time.

Before any of that, a last guard against a flood of connections: beyond `FLOOD_FACTOR`
times the capacity of requests in the process, authenticated or not, a request is shed
before its credentials are read (no account can be told apart yet, and reading them is
the cost a flood imposes). A burst of one account within the numbers of the contract
(its 170 a second) stays far below it.

One event loop per process owns the counts: no lock is needed.
"""

from __future__ import annotations

import collections

FLOOD_FACTOR = 4


class Overloaded(Exception):
    """The process is at capacity and the account holds its share: shed at once, rather
    than queued behind the others until the client gives up."""

    def __init__(self):
        super().__init__("The service is at capacity; retry later")


class Admission:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self.flood_limit = FLOOD_FACTOR * capacity
        self.in_flight = 0
        self.held: collections.Counter[str] = collections.Counter()

    def enter(self, account: str) -> None:
        """Take a place for a request of `account`, or raise Overloaded."""
        if self.in_flight >= self.capacity:
            accounts = len(self.held) + (account not in self.held)
            if self.held[account] >= max(1, self.capacity // accounts):
                raise Overloaded()
        self.in_flight += 1
        self.held[account] += 1

    def leave(self, account: str) -> None:
        """Give back the place `enter` took."""
        self.in_flight -= 1
        self.held[account] -= 1
        if self.held[account] <= 0:
            del self.held[account]
