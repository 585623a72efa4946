"""Logs and progress bars, always on stderr so stdout stays clean for records."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True, highlight=False)
_QUIET = os.environ.get("PSR_QUIET") == "1"


def info(msg: str) -> None:
    if not _QUIET:
        console.print(f"[dim]psr[/dim] {msg}", markup=True, soft_wrap=True)


def warn(msg: str) -> None:
    console.print(f"[yellow]warning:[/yellow] {msg}", markup=True, soft_wrap=True)


_bars: list = []  # (Progress, task id) of the live bars, innermost last


@contextmanager
def progress(description: str, total: int | None) -> Iterator[callable]:
    """``with progress("search", n) as advance: ... advance(k)``; a live bar on stderr."""
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("[dim]{task.fields[status]}"),
        console=console,
        disable=_QUIET,
        transient=False,
    )
    with bar:
        task = bar.add_task(description, total=total, status="")
        _bars.append((bar, task))
        try:
            yield lambda k=1: bar.advance(task, k)
        finally:
            _bars.remove((bar, task))


def status(text: str) -> None:
    """Show ``text`` (e.g. an engine's requests in flight) at the end of the innermost live bar, if any."""
    if _bars:
        bar, task = _bars[-1]
        bar.update(task, status=text)


def track(items: Iterable, description: str, total: int | None = None) -> Iterator:
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    with progress(description, total) as advance:
        for x in items:
            yield x
            advance()
