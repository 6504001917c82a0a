"""Task kinds: how each kind of data source (classify, detect, multitask, ...) gets its model and
its Task. A kind is one `register_kind` call in a module named `kind.py` of any leannet
subpackage; `train/` never imports the packages that provide them by name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from leannet.data.registry import DataSource
from leannet.errors import LeannetError
from leannet.plugins import import_named


@dataclass(frozen=True)
class BuildOptions:
    """What `leannet train` says about the model beyond its name (each kind reads its own)."""

    width_mult: float | None = None
    head: str = "v3"
    sharing: str | None = None
    penalty: str | None = None
    strength: float | None = None
    weighting: str | None = None
    label_smoothing: float = 0.0

    def backbone_kwargs(self) -> dict[str, Any]:
        """Keyword arguments every backbone-based kind passes to the registry model."""
        return {"width_mult": float(self.width_mult)} if self.width_mult is not None else {}


@dataclass(frozen=True)
class TaskKind:
    """One kind of task.

    `build(source, model_name, options) -> (model, task)` makes a fresh model for a source;
    `task_for(model, source) -> task` gives the Task that trains and evaluates a saved model;
    `recipe` holds the training defaults that work for the kind (optimizer, warm-up);
    `planner(model) -> planner | None` may give the iterative loop a planning strategy of the
    kind's own (soft-shared columns must lose the same channels together).
    """

    name: str
    build: Callable[[DataSource, str, BuildOptions], tuple[nn.Module, Any]]
    task_for: Callable[[nn.Module, DataSource], Any]
    recipe: dict[str, Any] = field(default_factory=dict)
    planner: Callable[[nn.Module], Any] | None = None


_KINDS: dict[str, TaskKind] = {}


def register_kind(kind: TaskKind) -> TaskKind:
    """Add a task kind (the last registration of a name wins, so users can replace one)."""
    _KINDS[kind.name] = kind
    return kind


def list_kinds() -> dict[str, TaskKind]:
    """Every registered kind, after importing the `kind` modules of leannet's packages."""
    import_named("leannet", "kind")
    return dict(sorted(_KINDS.items()))


def get_kind(name: str) -> TaskKind:
    """The kind called `name`, or a one-line error listing the kinds there are."""
    kinds = list_kinds()
    if name not in kinds:
        raise LeannetError(f"unknown task kind {name!r}; expected one of {', '.join(kinds)}")
    return kinds[name]


def kind_for(source: DataSource, task: str | None = None, options: BuildOptions | None = None
             ) -> TaskKind:
    """The kind that trains on `source`: the asked one, else the source's; sharing options on a
    classification request mean multi-task."""
    name = task or source.task
    if options is not None and options.sharing is not None and name == "classify":
        name = "multitask"
    if task == "classify" and source.task != "classify":
        raise LeannetError(f"data source {source.name!r} is a {source.task} source, not classify")
    return get_kind(name)


def task_for(model: nn.Module, source: DataSource) -> Any:
    """The Task for a saved `model` on `source`, chosen by the source's kind."""
    return get_kind(getattr(source, "task", "classify")).task_for(model, source)


def planner_for(model: nn.Module) -> Any:
    """A kind-specific planning strategy for `model`, or None for the default (by scores)."""
    for kind in list_kinds().values():
        planner = kind.planner(model) if kind.planner is not None else None
        if planner is not None:
            return planner
    return None
