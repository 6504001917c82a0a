"""A registry of data sources by name (`digits`, `mnist`, `imagefolder:PATH`, ...).

A source factory is registered under a name or a `prefix:` (for sources that take a path, such as
`imagefolder:PATH`). Modules of `leannet.data` register themselves when first needed.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from torch.utils.data import Dataset

from leannet.errors import LeannetError
from leannet.plugins import import_modules


SPLITS = ("train", "val", "test")


@dataclass
class DataSource:
    """Train, validation and test sets with the facts a model needs (classes, channels, size).

    `val` selects (best epoch, the prune guard, calibration) and `test` reports, so no reported
    number comes from the split that chose it. `splits` says where each set came from. A source
    without a held-out test set leaves `test` None and says so in `splits`.
    """

    name: str
    train: Dataset
    val: Dataset
    num_classes: int
    in_channels: int
    image_size: int
    task: str = "classify"  # "classify", "multitask" or "detect"
    class_names: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # task-specific facts (task names, anchors…)
    test: Dataset | None = None
    splits: dict[str, str] = field(default_factory=dict)  # split -> where it came from

    def split(self, name: str) -> Dataset:
        """The set called `name` (train, val or test); a missing test set is a one-line error."""
        if name not in SPLITS:
            raise LeannetError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}")
        dataset = getattr(self, name)
        if dataset is None:
            raise LeannetError(f"data source {self.name!r} has no {name} split")
        return dataset


@dataclass(frozen=True)
class SourceEntry:
    """How to build a source, what it is, and whether it can be built on this machine."""

    factory: Callable[..., DataSource]
    description: str
    available: Callable[[Path | None], bool]


_SOURCES: dict[str, SourceEntry] = {}


def register_source(name: str, description: str,
                    available: Callable[[Path | None], bool] = lambda root: True) -> Callable:
    """Decorator: register a factory `(root: Path | None, arg: str | None, **options) -> DataSource`.

    A name ending in ':' is a prefix source; the text after the colon reaches the factory as `arg`.
    """

    def decorate(factory: Callable[..., DataSource]) -> Callable[..., DataSource]:
        _SOURCES[name] = SourceEntry(factory, description, available)
        return factory

    return decorate


def _load_builtin_sources() -> None:
    """Import every module of `leannet.data` once so their `@register_source` calls run."""
    import_modules("leannet.data")


def list_sources() -> dict[str, SourceEntry]:
    """All registered sources by name (prefix sources end with ':')."""
    _load_builtin_sources()
    return dict(sorted(_SOURCES.items()))


def get_source(name: str, root: str | Path | None = None, **options: Any) -> DataSource:
    """Build the source `name` (or `prefix:ARG`); unknown names list the valid ones.

    Options a source does not take (such as `image_size` for a source of fixed size) are dropped;
    callers check the returned source's facts against what their model needs.
    """
    sources = list_sources()
    arg = None
    key = name
    prefixed = ":" in name and name.split(":", 1)[0] + ":" in sources
    if not prefixed and name.lower().endswith((".yaml", ".yml")) and "yolo:" in sources:
        key, arg = "yolo:", name  # a data.yaml path, as other YOLO tools take it
    elif name not in sources and ":" in name:
        key, arg = name.split(":", 1)
        key += ":"
    if key not in sources:
        raise LeannetError(f"unknown data source {name!r}; expected one of {', '.join(sources)}")
    root_path = Path(root) if root is not None else None
    factory = sources[key].factory
    accepted = inspect.signature(factory).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        options = {k: v for k, v in options.items() if k in accepted}  # e.g. a fixed image size
    return factory(root=root_path, arg=arg, **options)
