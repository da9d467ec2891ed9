"""The event loop: events run in (time, order scheduled) order, whatever bucket of the
calendar queue holds them, and a run can stop and go on."""

import random

import pytest

from simulation.engine import BUCKET_SHIFT, US_PER_S, Sim, SimError


def test_events_run_in_time_then_scheduling_order() -> None:
    sim = Sim(1)
    rng = random.Random(5)
    ran: list[tuple[int, int]] = []
    expected: list[tuple[int, int]] = []

    def event(tag: int) -> None:
        ran.append((sim.now, tag))
        if tag < 2000:  # events scheduled from events: now, soon, or buckets ahead
            delay = rng.choice([0, 1, rng.randrange(1 << BUCKET_SHIFT), rng.randrange(10**6)])
            expected.append((sim.now + delay, 2000 + tag))
            sim.after(delay, event, 2000 + tag)

    for tag in range(2000):
        time_us = rng.choice([0, 7, rng.randrange(50 << BUCKET_SHIFT), rng.randrange(10**6)])
        expected.append((time_us, tag))
        sim.at(time_us, event, tag)
    sim.run(2 * 10**6)
    # Ties keep scheduling order: a stable sort of the schedule by time.
    order = {tag: i for i, (_, tag) in enumerate(expected)}
    assert ran == sorted(expected, key=lambda e: (e[0], order[e[1]]))
    assert sim.dispatched == 4000 and sim.pending == 0


def test_a_run_stops_at_its_end_and_goes_on() -> None:
    sim = Sim(1)
    ran: list[int] = []
    for time_us in (5, 1500, 1501, 9000, 3 * US_PER_S):
        sim.at(time_us, ran.append, time_us)
    sim.run(1500)
    assert ran == [5, 1500] and sim.now == 1500 and sim.pending == 3
    sim.at(1500, ran.append, -1)  # due now, in the bucket being run
    sim.run(US_PER_S)
    assert ran == [5, 1500, -1, 1501, 9000] and sim.now == US_PER_S
    sim.run(4 * US_PER_S)
    assert ran[-1] == 3 * US_PER_S and sim.pending == 0


def test_steps_see_the_clock_and_may_schedule_after_a_gap() -> None:
    """A step callback after a stretch with no events schedules into a bucket before the
    next event's: it still runs first."""
    sim = Sim(1)
    ran: list[int] = []
    sim.at(5 * US_PER_S + 10, ran.append, 99)

    def step(now_us: int) -> None:
        ran.append(now_us)
        sim.at(now_us, ran.append, -now_us)

    sim.run(6 * US_PER_S, on_step=step, step_us=2 * US_PER_S)
    assert ran == [
        2 * US_PER_S,
        4 * US_PER_S,  # both steps come before the next event...
        -2 * US_PER_S,
        -4 * US_PER_S,  # ...and what they scheduled runs first, in order
        99,
        6 * US_PER_S,  # the last step, at the run's end: what it schedules waits
    ]
    assert sim.pending == 1


def test_an_event_in_the_past_is_refused() -> None:
    sim = Sim(1)
    sim.run(100)
    with pytest.raises(SimError, match="in the past"):
        sim.at(99, print)
