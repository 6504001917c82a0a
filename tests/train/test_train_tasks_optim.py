"""ClassificationTask, task_for and the optimiser/schedule helpers."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from leannet.data import get_source
from leannet.errors import LeannetError
from leannet.train import ClassificationTask, task_for
from leannet.train.optim import make_optimizer, param_groups, warmup_cosine


def test_classification_loss_and_meter():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0], [5.0, 0.0, 0.0]])
    labels = torch.tensor([0, 1, 0, 0])
    task = ClassificationTask(label_smoothing=0.1)
    expected = F.cross_entropy(logits, labels, label_smoothing=0.1)
    assert torch.allclose(task.loss(logits, labels), expected)
    meter = task.meter()
    meter.update(logits[:2], labels[:2])
    meter.update(logits[2:], labels[2:])
    metrics = meter.compute()
    assert metrics["accuracy"] == 0.75
    assert math.isclose(metrics["val_loss"], F.cross_entropy(logits, labels).item(), rel_tol=1e-6)
    assert task.main_metric == "accuracy"
    with pytest.raises(LeannetError):
        ClassificationTask(label_smoothing=1.0)


def test_task_for_classify_source_and_unknown_kind():
    source = get_source("digits", image_size=8)
    assert isinstance(task_for(nn.Linear(2, 2), source), ClassificationTask)
    source.task = "segment"
    with pytest.raises(LeannetError, match="unknown task kind"):
        task_for(nn.Linear(2, 2), source)


def test_warmup_then_cosine_to_zero():
    model = nn.Linear(3, 2)
    opt = make_optimizer([model], "sgd", lr=0.1)
    sched = warmup_cosine(opt, total_steps=100, warmup_steps=10)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1 / 11)
    assert max(lrs) == pytest.approx(0.1) and lrs.index(max(lrs)) == 10
    assert lrs[55] == pytest.approx(0.05, rel=1e-6)  # halfway through the cosine
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_no_weight_decay_on_biases_and_norms():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
    decay, no_decay = param_groups([model], 1e-4)
    assert [p.ndim for p in decay["params"]] == [4]
    assert len(no_decay["params"]) == 3 and no_decay["weight_decay"] == 0.0
    assert isinstance(make_optimizer([model], "adamw", lr=1e-3), torch.optim.AdamW)
    with pytest.raises(LeannetError, match="unknown optimizer"):
        make_optimizer([model], "lion")
