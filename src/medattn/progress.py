"""Progress bars (rich, on stderr so `--json` keeps stdout clean) with ETA and live metrics."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def console():
    from rich.console import Console

    return Console(stderr=True)


def bar(*, transient: bool = False):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=console(),
        transient=transient,
        disable=not sys.stderr.isatty() and "pytest" in sys.modules,
    )


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    items = list(items) if total is None else items
    with bar(transient=True) as progress:
        task = progress.add_task(description, total=total or len(items), status="")
        for item in items:
            yield item
            progress.advance(task)
