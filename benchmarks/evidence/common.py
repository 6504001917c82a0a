"""Shared plumbing of the evidence experiments: honest splits, fast in-memory batches, seeds, output.

Every experiment selects on a validation split carved (seeded, stratified) from the training set
and reports on the source's test split, which nothing is ever selected on. Batches come from
tensors held in memory (no per-item Python), because the machine is two shared CPU cores.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch: fit uses every core otherwise

import functools  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Iterator, Sequence  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))  # one core each: the machine is shared

from leannet.data import get_source  # noqa: E402
from leannet.errors import LeannetError  # noqa: E402
from leannet.files import atomic_write_json, atomic_write_text  # noqa: E402
from leannet.train import evaluate, fit  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "docs" / "benchmarks" / "evidence"


def data_root(name: str) -> Path:
    """`../shared/data/<folder>` for a source name (multi-mnist reads mnist)."""
    folder = {"multi-mnist": "mnist"}.get(name, name)
    path = DATA / folder
    if not path.is_dir():
        raise LeannetError(f"{path} is missing: the evidence benchmarks read ../shared/data")
    return path


class Batches:
    """(inputs, targets) batches over tensors in memory; targets may be a dict of tensors.

    Shuffled batches draw their order from a generator seeded with `seed` + epoch, so every
    variant trained with the same seed sees the same batches.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor | dict[str, torch.Tensor],
                 batch_size: int, shuffle: bool = False, seed: int = 0) -> None:
        self.x, self.y, self.batch_size, self.shuffle = x, y, batch_size, shuffle
        self.seed, self.epoch = seed, 0

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def _take(self, index: torch.Tensor) -> tuple[torch.Tensor, Any]:
        y = ({k: v[index] for k, v in self.y.items()} if isinstance(self.y, dict)
             else self.y[index])
        return self.x[index], y

    def __iter__(self) -> Iterator[tuple[torch.Tensor, Any]]:
        n = len(self.x)
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(
                self.seed * 1000 + self.epoch))
            self.epoch += 1
        else:
            order = torch.arange(n)
        for start in range(0, n, self.batch_size):
            yield self._take(order[start:start + self.batch_size])


def stratified_split(labels: torch.Tensor, n_train: int, n_val: int, seed: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint index sets of about n_train and n_val, each with the classes' proportions."""
    generator = torch.Generator().manual_seed(seed)
    train, val = [], []
    classes = torch.unique(labels)
    total = len(labels)
    for c in classes:
        members = torch.nonzero(labels == c).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        share = len(members) / total
        k_val, k_train = round(n_val * share), round(n_train * share)
        val.append(members[:k_val])
        train.append(members[k_val:k_val + k_train])
    return torch.sort(torch.cat(train)).values, torch.sort(torch.cat(val)).values


@dataclass
class Splits:
    """Normalised float tensors of a carved train / val subset and the (sub)test set."""

    name: str
    train: tuple[torch.Tensor, Any]
    val: tuple[torch.Tensor, Any]
    test: tuple[torch.Tensor, Any]
    num_classes: int
    in_channels: int
    image_size: int

    def describe(self) -> dict[str, Any]:
        return {"source": self.name, "train": len(self.train[0]), "val": len(self.val[0]),
                "test": len(self.test[0]),
                "val_from": "carved from the training set (seeded, stratified)",
                "test_from": "the source's test split (never used for selection)"}


def _tensors(dataset: Any) -> tuple[torch.Tensor, Any]:
    """Normalised float images and labels of a leannet tensor dataset (no augmentation)."""
    x = (dataset.images.float() / 255 - dataset.mean) / dataset.std
    return x, dataset.labels


def _test_set(source: Any) -> Any:
    """The source's test split: `test` once the sources carry one, else `val` (today's test)."""
    test = getattr(source, "test", None)
    return source.val if test is None else test


def load_splits(name: str, n_train: int, n_val: int, n_test: int | None, seed: int = 0
                ) -> Splits:
    """A seeded train/val carve of the training set and the first n_test test images
    (a fixed, class-balanced-in-expectation slice, the same for every seed)."""
    (train_x, train_y), (test_x, test_y), facts = _source(name, n_train + n_val, n_test)
    labels = train_y if not isinstance(train_y, dict) else next(iter(train_y.values()))
    tr, va = stratified_split(labels, n_train, n_val, seed)
    if n_test is not None:
        keep = torch.randperm(len(test_x), generator=torch.Generator().manual_seed(12345))[:n_test]
        test_x, test_y = _pick(test_x, test_y, keep)
    return Splits(name, _pick(train_x, train_y, tr), _pick(train_x, train_y, va), (test_x, test_y),
                  *facts)


# options per source: CIFAR-10 folders decode at 32 px (folder sources default to 224); the
# multi-mnist pairs are drawn for a subset (pairing all 60,000 is slow and not needed)
_OPTIONS = {"cifar10": lambda n, t: {"image_size": 32},
            "multi-mnist": lambda n, t: {"train_size": min(60000, 3 * n),
                                         "val_size": 10000 if t is None else t}}


@functools.lru_cache(maxsize=2)
def _source(name: str, n: int, n_test: int | None) -> tuple[tuple, tuple, tuple[int, int, int]]:
    """Train and test tensors and (classes, channels, size) of a source, read once per process."""
    options = _OPTIONS.get(name, lambda n, t: {})(n, n_test)
    source = get_source(name, root=data_root(name), augment=False, download=False, **options)
    return (_tensors(source.train), _tensors(_test_set(source)),
            (source.num_classes, source.in_channels, source.image_size))


def _pick(x: torch.Tensor, y: Any, index: torch.Tensor) -> tuple[torch.Tensor, Any]:
    return x[index], ({k: v[index] for k, v in y.items()} if isinstance(y, dict) else y[index])


def train_select_test(model: nn.Module, splits: Splits, task: Any, *, epochs: int, seed: int,
                      batch_size: int = 128, lr: float = 2e-3, weight_decay: float = 1e-4
                      ) -> dict[str, Any]:
    """leannet's `fit` (AdamW, cosine), the best epoch chosen on validation and restored, then
    train / val / test metrics of that epoch."""
    train = Batches(*splits.train, batch_size, shuffle=True, seed=seed)
    val = Batches(*splits.val, 512)
    history = fit(model, train, val, task, epochs, optimizer="adamw", lr=lr,
                  weight_decay=weight_decay, seed=seed, device="cpu", progress=False,
                  restore_best=True)
    metric = task.main_metric
    best = max(range(len(history)), key=lambda i: history[i][metric])
    return {"best_epoch": best + 1,
            "train": evaluate(model, Batches(*splits.train, 512), task, "cpu"),
            "val": evaluate(model, val, task, "cpu"),
            "test": evaluate(model, Batches(*splits.test, 512), task, "cpu"),
            "seconds": round(sum(r["seconds"] for r in history), 1)}


def mean_std(values: Sequence[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for one value), with the values themselves."""
    values = [float(v) for v in values]
    return {"mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0, "values": values}


def pm(stat: dict[str, float], scale: float = 100.0, digits: int = 1) -> str:
    """`84.7 ± 0.3` from a mean_std dict (percent by default)."""
    return f"{stat['mean'] * scale:.{digits}f} ± {stat['std'] * scale:.{digits}f}"


def separated(a: dict[str, float], b: dict[str, float]) -> bool:
    """True when the means differ by more than the larger standard deviation plus the smaller
    (a deliberately plain test: with 3 seeds, anything closer is called 'inside the spread')."""
    return abs(a["mean"] - b["mean"]) > max(a["std"], b["std"]) + min(a["std"], b["std"])


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}


def write(name: str, result: dict[str, Any], table: str) -> None:
    """docs/benchmarks/evidence/<name>.json and <name>.md (the markdown table)."""
    OUT.mkdir(parents=True, exist_ok=True)
    atomic_write_json(OUT / f"{name}.json", result)
    atomic_write_text(OUT / f"{name}.md", table.rstrip() + "\n")
    print(table)


def markdown(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A markdown table; `align` is one character per column (l or r), default r but the first."""
    align = align or "l" + "r" * (len(headers) - 1)
    marks = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def figure_path(name: str) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    return OUT / f"{name}.png"


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2)
