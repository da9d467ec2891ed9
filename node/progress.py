"""The rich progress bar every long command shows on stderr (terminals only)."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn


@contextmanager
def progress_bar(console: Console) -> Iterator[Callable[[str, float], None]]:
    """A bar with one task per phase on ``console``; yields ``update(phase, fraction)``."""
    with Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    ) as bar:
        tasks: dict[str, int] = {}

        def update(phase: str, fraction: float) -> None:
            if phase not in tasks:
                tasks[phase] = int(bar.add_task(phase, total=1.0))
            bar.update(tasks[phase], completed=min(max(fraction, 0.0), 1.0))  # type: ignore[arg-type]

        yield update
