"""A rich progress bar for the slow parts (calibration), silent when the input has no length."""
from __future__ import annotations

from typing import Any, Iterable, Iterator


def progress_iter(items: Iterable[Any], description: str, limit: int | None = None
                  ) -> Iterator[Any]:
    """Iterate with a transient rich progress bar."""
    from rich.progress import Progress

    try:
        total = len(items)  # type: ignore[arg-type]
    except TypeError:
        total = None
    if limit is not None:
        total = min(total, limit) if total is not None else limit
    with Progress(transient=True) as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)
