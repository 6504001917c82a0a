"""Transfer learning (new head, frozen backbone with BatchNorm in eval mode, slower backbone) and
distillation from a frozen teacher (logits, per-head outputs, features), on the bundled digits."""
from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

import leannet
from leannet.data import get_source
from leannet.data.loaders import make_loaders
from leannet.errors import LeannetError
from leannet.jobs.train import TrainJob, run_train
from leannet.models import load_weights
from leannet.prune import Pruner, Target
from leannet.train import ClassificationTask, fit
from leannet.train.distill import DistillConfig, distilling, frozen_teacher, output_term
from leannet.train.optim import make_optimizer
from leannet.train.transfer import frozen_backbone, scale_backbone_lr
from tests.helpers import run_cli


def _resnet(num_classes: int = 10) -> torch.nn.Module:
    torch.manual_seed(0)
    return leannet.create_model("resnet20", num_classes=num_classes, in_channels=1,
                                width_mult=0.25, image_size=8)


@pytest.fixture(scope="module")
def digits():
    source = get_source("digits", image_size=8)
    return source, make_loaders(source, 64, seed=0)


def test_frozen_backbone_trains_only_the_new_head_and_keeps_batchnorm_statistics(digits):
    _, (train, val) = digits
    pretrained = _resnet(num_classes=5)  # another task's classifier: 5 classes
    model = _resnet(num_classes=10)
    fresh = load_weights_from(pretrained, model)
    assert fresh == ["fc.bias", "fc.weight"]
    before = copy.deepcopy(model.state_dict())
    with frozen_backbone(model, fresh) as frozen:
        assert frozen == sum(p.numel() for n, p in model.named_parameters() if n not in fresh)
        fit(model, train, val, ClassificationTask(), 1, lr=0.05, progress=False)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"fc.weight", "fc.bias"}  # running means and variances untouched too
    assert all(p.requires_grad for p in model.parameters())  # restored on exit
    model.train()
    assert all(m.training for m in model.modules())  # the eval-mode hooks are gone


def load_weights_from(source: torch.nn.Module, model: torch.nn.Module) -> list[str]:
    """Load `source`'s state dict through a safetensors file, as --weights PATH does."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "w.safetensors"
        save_file(source.state_dict(), str(path))
        return load_weights(model, str(path))["fresh"]


def test_backbone_learning_rate_scale_reaches_the_optimiser():
    model = _resnet()
    scale_backbone_lr(model, ["fc.weight", "fc.bias"], 0.1)
    optimizer = make_optimizer([model], "sgd", lr=0.05)
    rates = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    assert rates[id(model.fc.weight)] == 0.05 and rates[id(model.fc.bias)] == 0.05
    assert rates[id(model.stem[0].weight)] == pytest.approx(0.005)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))
    with pytest.raises(LeannetError, match=r"--backbone-lr-scale must be in \(0, 1\]"):
        scale_backbone_lr(model, [], float("nan"))


def test_train_job_freezes_then_fine_tunes_and_records_it(tmp_path):
    pretrained = tmp_path / "pre.safetensors"
    save_file(_resnet(num_classes=5).state_dict(), str(pretrained))
    job = TrainJob(model="resnet20", data="digits", epochs=2, batch_size=64, width_mult=0.25,
                   image_size=8, out=tmp_path / "run", weights=str(pretrained), freeze_epochs=1)
    result = run_train(job, progress=False)
    transfer = result["transfer"]
    assert transfer["fresh"] == ["fc.bias", "fc.weight"] and transfer["backbone_lr_scale"] == 0.1
    assert len(transfer["frozen_history"]) == 1 and result["epochs"] == 2
    config = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert config["weights"]["source"] == str(pretrained)
    for bad, message in [({"freeze_epochs": 2}, "--freeze-epochs must be"),
                         ({"weights": None}, "pass --weights too")]:
        with pytest.raises(LeannetError, match=message):
            run_train(TrainJob(**{**job.__dict__, "out": tmp_path / "x", **bad}), progress=False)
    assert not (tmp_path / "x").exists()


def test_output_term_is_kl_at_temperature_for_logits_and_mse_per_head():
    torch.manual_seed(0)
    s, t = torch.randn(4, 10), torch.randn(4, 10)
    expected = F.kl_div(F.log_softmax(s / 3, 1), F.softmax(t / 3, 1), reduction="batchmean") * 9
    assert torch.allclose(output_term(s, t, 3.0), expected)
    assert output_term(t, t, 3.0).abs() < 1e-6
    maps_s, maps_t = {"s8": torch.randn(2, 5, 4, 4), "s16": torch.randn(2, 5, 2, 2)}, \
        {"s8": torch.randn(2, 5, 4, 4), "s16": torch.randn(2, 5, 2, 2)}
    per_head = (F.mse_loss(maps_s["s8"], maps_t["s8"]) + F.mse_loss(maps_s["s16"], maps_t["s16"])) / 2
    assert torch.allclose(output_term(maps_s, maps_t, 4.0), per_head)


def test_distillation_task_teacher_runs_only_in_training_and_hooks_go_away(digits):
    _, (train, _) = digits
    teacher = frozen_teacher(_resnet())
    student = copy.deepcopy(teacher)
    inputs, targets = next(iter(train))
    task = ClassificationTask()
    with distilling(student, teacher, task, inputs[:2], DistillConfig(alpha=1.0)) as distilled:
        distilled.train()
        assert not teacher.training  # its BatchNorm statistics stay fixed
        student.train()
        out = student(inputs)  # batch statistics; the teacher normalises with running ones
        with torch.no_grad():
            expected = output_term(out, teacher(inputs), 4.0)
        assert expected > 0 and torch.allclose(distilled.loss(out, targets), expected)
        student.eval()
        out = student(inputs)
        assert torch.allclose(distilled.loss(out, targets), task.loss(out, targets))
        assert distilled.main_metric == "accuracy"
    assert not student._forward_pre_hooks


def test_feature_distillation_of_a_pruned_student_trains_its_adapters(digits):
    _, (train, val) = digits
    teacher = frozen_teacher(_resnet())
    student = copy.deepcopy(teacher)
    example = next(iter(val))[0][:2]
    pruner = Pruner(student, example)
    pruner.apply(pruner.plan(Target(macs=0.5)))
    config = DistillConfig(alpha=0.7, temperature=2.0, features=("layer2", "layer3"))
    with distilling(student, teacher, ClassificationTask(), example, config) as distilled:
        adapter = distilled.adapters["layer3"]
        assert adapter.in_channels < adapter.out_channels == teacher.layer3[-1].conv2.out_channels
        start = adapter.weight.detach().clone()
        history = fit(student, train, val, distilled, 1, lr=0.05, progress=False)
        assert math.isfinite(history[0]["loss"]) and not torch.equal(start, adapter.weight)
    with pytest.raises(LeannetError, match="the student has no layer 'layer9'"):
        distilling(student, teacher, ClassificationTask(), example,
                   DistillConfig(features=("layer9",))).__enter__()


def test_prune_cli_distills_and_records_it(tmp_path, monkeypatch, capsys):
    source = get_source("digits", image_size=8)
    model = _resnet()
    train, val = make_loaders(source, 64)
    fit(model, train, val, ClassificationTask(), 1, lr=0.05, progress=False)
    model.leannet_config["data"] = {"name": "digits", "root": None}
    leannet.save(model, tmp_path / "base")
    args = ("prune", str(tmp_path / "base"), "--target-macs", "0.6", "--steps", "1",
            "--max-drop", "1", "--distill", "--distill-features", "layer3")
    code, out, err = run_cli(monkeypatch, capsys, *args, "--out", str(tmp_path / "p"))
    assert code == 0, err
    result = json.loads((tmp_path / "p" / "result.json").read_text())
    assert result["distill"] == {"alpha": 0.5, "temperature": 4.0, "features": ["layer3"],
                                 "feature_weight": 1.0}
    assert result["final"]["macs"] <= 0.62 * result["baseline"]["macs"]
    code, _, err = run_cli(monkeypatch, capsys, *args, "--distill-alpha", "nan",
                           "--out", str(tmp_path / "q"))
    assert code == 2 and "--distill-alpha" in err and err.count("\n") == 1
    assert not (tmp_path / "q").exists()
