"""What every model of a run (gossip workload, swarm, ledger, sync, feed) offers the runner.

The runner builds the models from the scenario, calls ``start`` once before the clock
runs, ``sample`` every ``run.sample_interval_s`` of virtual time (one row of the model's
CSV series), and ``finish`` once at the end, where a model writes its part of the
:class:`~simulation.metrics.Result`: ``summary[<name>]``, samples for CDFs, per-node
values, and a line in ``failures`` for every check that failed (a safety violation, a
message that never arrived where the model says it must).
"""

from typing import Protocol

from simulation.metrics import Result


class Model(Protocol):
    """One part of the simulated network."""

    name: str

    def start(self) -> None:
        """Schedule the model's first events."""

    def sample(self) -> dict[str, float]:
        """The model's figures now: one row of its time series (may be empty)."""

    def finish(self, result: Result) -> None:
        """Write the model's figures and failed checks into ``result``."""
