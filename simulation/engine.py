"""The discrete-event loop: virtual time in integer microseconds, one seed.

Nothing here reads a clock or global randomness. Events run in (time, order scheduled)
order, so a run is a pure function of its scenario and seed. Every source of randomness
is a named stream (:meth:`Sim.rng`) derived from the seed and the name: adding a stream
for a new model never shifts the numbers another model draws.

Two kinds of simulated events are counted:

- ``dispatched``: callbacks taken from the queue (a message arriving whose outcome is not
  yet known, a timer firing);
- ``resolved``: deliveries whose outcome is already decided when they are sent (the
  receiver already holds the message, or told the sender it does not want it), which a
  model settles at once and records with :meth:`Sim.resolved` instead of queueing.

``events`` is their sum.

The queue is a calendar: events are kept in buckets of ``2**BUCKET_SHIFT`` microseconds
(a dict of unsorted lists, with a heap of the bucket numbers), and only the bucket being
run is a heap. A push appends, and a pop sifts through the events of about one
millisecond instead of all pending ones: the same order as one heap, for fewer
comparisons, in memory that stays in cache.
"""

import hashlib
import heapq
import random
from collections.abc import Callable
from typing import Any

US_PER_MS = 1_000
US_PER_S = 1_000_000
BUCKET_SHIFT = 10
"""Events are bucketed by ``time_us >> BUCKET_SHIFT``: about a millisecond each."""

Event = tuple[int, int, Callable[..., None], tuple[Any, ...]]
"""(time_us, order, fn, args): run ``fn(*args)`` at ``time_us``; ``order`` breaks ties."""


def derive_seed(seed: int, name: str) -> int:
    """A 64-bit seed for the stream ``name`` of run ``seed``."""
    digest = hashlib.sha256(f"toktok-sim/{seed}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


class SimError(Exception):
    """A run that cannot go on: a model broke one of its own rules."""


class Sim:
    """The event queue and the virtual clock."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.now = 0
        # Hot models :meth:`push` events themselves, taking ``order`` from
        # :meth:`take_orders`; everyone else uses :meth:`at`.
        self._buckets: dict[int, list[Event]] = {}
        self._starts: list[int] = []  # a heap of the numbers of the buckets in _buckets
        self._current: list[Event] = []  # the bucket being run, a heap
        self._current_bucket = -1
        self._order = 0
        self.dispatched = 0
        self._resolved = 0
        self._rngs: dict[str, random.Random] = {}

    @property
    def events(self) -> int:
        return self.dispatched + self._resolved

    @property
    def resolved_events(self) -> int:
        return self._resolved

    @property
    def pending(self) -> int:
        return len(self._current) + sum(len(events) for events in self._buckets.values())

    def push(self, event: Event) -> None:
        """Queue ``event``, whose time is not before now and whose order came from
        :meth:`take_orders` (the hot path of :meth:`at`)."""
        bucket = event[0] >> BUCKET_SHIFT
        if bucket <= self._current_bucket:
            # The bucket being run is the front of the queue: an event due in it, or
            # before it (an on_step callback's, after a gap), is ordered there.
            heapq.heappush(self._current, event)
            return
        events = self._buckets.get(bucket)
        if events is None:
            self._buckets[bucket] = [event]
            heapq.heappush(self._starts, bucket)
        else:
            events.append(event)

    def rng(self, name: str) -> random.Random:
        """The random stream ``name``: the same numbers for the same seed, every run."""
        stream = self._rngs.get(name)
        if stream is None:
            stream = self._rngs[name] = random.Random(derive_seed(self.seed, name))
        return stream

    def at(self, time_us: int, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` at virtual time ``time_us`` (not before now)."""
        if time_us < self.now:
            raise SimError(f"event scheduled in the past: {time_us} < {self.now}")
        self._order += 1
        self.push((time_us, self._order, fn, args))

    def after(self, delay_us: int, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` ``delay_us`` microseconds from now."""
        self.at(self.now + max(0, delay_us), fn, *args)

    def take_orders(self, count: int) -> int:
        """Reserve ``count`` tie-break numbers for pushes onto ``queue``: the first."""
        first = self._order + 1
        self._order += count
        return first

    def resolved(self, count: int = 1) -> None:
        """Count deliveries a model settled when they were sent (see the module text)."""
        self._resolved += count

    def run(
        self,
        until_us: int,
        *,
        on_step: Callable[[int], None] | None = None,
        step_us: int = US_PER_S,
    ) -> None:
        """Run every event due up to ``until_us``, then set the clock there.

        ``on_step(now_us)`` is called each time virtual time passes a multiple of
        ``step_us`` (metrics sampling, progress bars)."""
        pop = heapq.heappop
        next_step = (self.now // step_us + 1) * step_us if on_step else until_us + 1
        dispatched = 0
        current = self._current
        while True:
            if not current:
                if not self._starts or self._starts[0] << BUCKET_SHIFT > until_us:
                    break
                bucket = pop(self._starts)
                current = self._buckets.pop(bucket)
                heapq.heapify(current)
                self._current = current
                self._current_bucket = bucket
            time_us = current[0][0]
            if time_us > until_us:
                break
            while time_us >= next_step and on_step is not None:
                self.now = next_step
                self.dispatched += dispatched
                dispatched = 0
                on_step(next_step)
                next_step += step_us
            time_us, _, fn, args = pop(current)
            self.now = time_us
            fn(*args)
            dispatched += 1
        self.dispatched += dispatched
        while on_step is not None and next_step <= until_us:
            self.now = next_step
            on_step(next_step)
            next_step += step_us
        self.now = until_us
