"""fit/evaluate on real digits: learning, reproducibility, checkpoints, task hooks, bad input."""
import json

import pytest
import torch
from torch import nn

from leannet.data import get_source
from leannet.data.loaders import make_loaders
from leannet.errors import LeannetError
from leannet.checkpoint import load
from leannet.models import create_model
from leannet.train import ClassificationTask, evaluate, fit
from leannet.train.fit import to_device


@pytest.fixture(scope="module")
def digits():
    return get_source("digits", image_size=8)


def tiny(digits, seed=0):
    torch.manual_seed(seed)
    return create_model("simple_cnn", num_classes=10, in_channels=1, image_size=8,
                        channels=[8, 16], hidden=32)


def run(digits, out_dir=None, seed=0, epochs=3):
    model = tiny(digits, seed)
    train, val = make_loaders(digits, 64, seed=seed)
    history = fit(model, train, val, ClassificationTask(), epochs, optimizer="adamw", lr=0.01,
                  weight_decay=0.0, warmup_epochs=0.5, seed=seed, out_dir=out_dir, progress=False)
    return model, history


def test_fit_learns_saves_best_and_is_reproducible(digits, tmp_path):
    model, history = run(digits, out_dir=tmp_path)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    # three epochs on the 1,295 digits left after a validation split is carved (chance: 0.1)
    assert history[-1]["accuracy"] > 0.8 and history[-1]["loss"] < history[0]["loss"]
    assert set(history[0]) >= {"epoch", "loss", "accuracy", "val_loss", "lr", "seconds"}
    lines = (tmp_path / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["accuracy"] for line in lines] == [r["accuracy"] for r in history]
    best = max(history, key=lambda r: r["accuracy"])
    saved = load(tmp_path / "model")
    _, val = make_loaders(digits, 64)
    assert evaluate(saved, val, ClassificationTask())["accuracy"] == best["accuracy"]
    assert json.loads((tmp_path / "model" / "metrics.json").read_text())["epoch"] == best["epoch"]
    _, again = run(digits)
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(again) == strip(history)


class PenalisedTask(nn.Module):
    """A task with a learnable parameter and an epoch hook, to check the loop honours both."""

    main_metric = "accuracy"

    def __init__(self):
        super().__init__()
        self.offset = nn.Parameter(torch.tensor(1.0))
        self.seen = []

    def loss(self, outputs, targets):
        return nn.functional.cross_entropy(outputs, targets["label"]) + self.offset ** 2

    def meter(self):
        inner = ClassificationTask().meter()

        class Meter:
            def update(self, outputs, targets):
                inner.update(outputs, targets["label"])

            def compute(self):
                return inner.compute()

        return Meter()

    def on_epoch_end(self, history):
        self.seen.append(len(history))


class WithPenalty(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)

    def auxiliary_loss(self):
        return torch.tensor(5.0)


def test_dict_targets_task_parameters_hooks_and_auxiliary_loss(digits):
    class DictTargets(torch.utils.data.Dataset):
        def __init__(self, base):
            self.base = base

        def __len__(self):
            return len(self.base)

        def __getitem__(self, i):
            x, y = self.base[i]
            return x, {"label": y}

    train = torch.utils.data.DataLoader(DictTargets(digits.train), batch_size=128, shuffle=True)
    val = torch.utils.data.DataLoader(DictTargets(digits.val), batch_size=256)
    task = PenalisedTask()
    history = fit(WithPenalty(tiny(digits)), train, val, task, 2, optimizer="adamw", lr=0.01,
                  weight_decay=0.0, progress=False)
    assert task.seen == [1, 2]
    assert abs(task.offset.item()) < 0.99  # the task's own parameter was optimised
    assert all(r["loss"] > 5.0 for r in history)  # the model's auxiliary loss was added


def test_to_device_handles_nested_targets():
    nested = {"a": torch.ones(1), "b": [torch.zeros(2), (torch.ones(3), "keep")]}
    moved = to_device(nested, torch.device("cpu"))
    assert moved["b"][1][1] == "keep" and torch.equal(moved["b"][0], torch.zeros(2))


def test_bad_epochs_and_diverging_loss(digits):
    train, val = make_loaders(digits, 64)
    with pytest.raises(LeannetError, match="epochs must be a positive integer"):
        fit(tiny(digits), train, val, ClassificationTask(), 0, progress=False)

    class NanTask(ClassificationTask):
        def loss(self, outputs, targets):
            return outputs.sum() * float("nan")

    with pytest.raises(LeannetError, match="loss became nan"):
        fit(tiny(digits), train, val, NanTask(), 1, progress=False)
