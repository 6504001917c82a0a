"""Rich progress display for training: a bar per epoch and one summary line per epoch."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

console = Console(stderr=True)


class _Bar:
    """Advances a rich task by one step and shows the running loss; a no-op when disabled."""

    def __init__(self, progress: Progress | None, task_id: Any) -> None:
        self.progress = progress
        self.task_id = task_id

    def advance(self, loss: float) -> None:
        if self.progress is not None and self.task_id is not None:
            self.progress.update(self.task_id, advance=1, loss=f"{loss:.4f}")


@contextmanager
def epoch_progress(epoch: int, epochs: int, steps: int, enabled: bool = True) -> Iterator[_Bar]:
    """A transient progress bar over the `steps` batches of one epoch (terminals only)."""
    if not enabled or not console.is_terminal:
        yield _Bar(None, None)
        return
    columns = (TextColumn(f"epoch {epoch}/{epochs}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task_id = progress.add_task("train", total=steps, loss="-")
        yield _Bar(progress, task_id)


def print_epoch(record: dict, main_metric: str, improved: bool) -> None:
    """One line per epoch: loss, main metric, lr and time; a star marks a new best."""
    metric = record.get(main_metric)
    metric_text = f"{main_metric} {metric:.4f}" if isinstance(metric, float) else ""
    star = " *" if improved else ""
    console.print(f"epoch {record['epoch']:>3}  loss {record['loss']:.4f}  {metric_text}  "
                  f"lr {record['lr']:.4g}  {record['seconds']:.1f}s{star}")
