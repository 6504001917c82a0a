"""Loss weighting (fixed, uncertainty, DWA) and the MultiTask's losses and metrics."""
import math

import pytest
import torch

from leannet.errors import LeannetError
from leannet.multitask import (DynamicWeightAveraging, FixedWeighting, MultiTask,
                               UncertaintyWeighting, make_weighting)


def test_fixed_weights_combine_losses():
    losses = {"left": torch.tensor(2.0), "right": torch.tensor(3.0)}
    assert make_weighting("fixed", ["left", "right"])(losses).item() == pytest.approx(5.0)
    weighted = FixedWeighting(["left", "right"], {"right": 0.5})
    assert weighted(losses).item() == pytest.approx(3.5)
    with pytest.raises(LeannetError, match="'middle' that the model does not have"):
        FixedWeighting(["left", "right"], {"middle": 1.0})
    with pytest.raises(LeannetError, match=">= 0"):
        FixedWeighting(["left", "right"], {"left": -1.0})
    with pytest.raises(LeannetError, match="unknown loss weighting 'famo'"):
        make_weighting("famo", ["left"])


def test_uncertainty_weighting_learns_the_task_noise():
    weighting = UncertaintyWeighting(["noisy", "clean"])
    losses = {"noisy": torch.tensor(2.0), "clean": torch.tensor(0.5)}
    optimizer = torch.optim.Adam(weighting.parameters(), lr=0.05)
    for _ in range(600):
        optimizer.zero_grad()
        weighting(losses).backward()
        optimizer.step()
    # 0.5 exp(-s) L + 0.5 s is minimal at s = log L: the noisier task gets the smaller weight
    assert weighting.log_vars.detach().tolist() == pytest.approx([math.log(2.0), math.log(0.5)],
                                                                  abs=1e-3)
    w = weighting.weights()
    assert w["clean"] / w["noisy"] == pytest.approx(4.0, rel=1e-2)


def test_dwa_weights_from_a_known_loss_history():
    dwa = DynamicWeightAveraging(["left", "right"], temperature=2.0)
    assert dwa.weights() == {"left": 1.0, "right": 1.0}
    dwa.on_epoch_end({"left": 1.0, "right": 1.0})
    assert dwa.weights() == {"left": 1.0, "right": 1.0}  # needs two epochs
    dwa.on_epoch_end({"left": 0.5, "right": 0.9})
    # r = (0.5, 0.9); w = 2 * softmax(r / 2) = 2 * e^0.25 / (e^0.25 + e^0.45), ...
    a, b = math.exp(0.25), math.exp(0.45)
    w = dwa.weights()
    assert w["left"] == pytest.approx(2 * a / (a + b)) and w["left"] == pytest.approx(0.90033, 1e-4)
    assert w["right"] == pytest.approx(2 * b / (a + b))
    dwa.on_epoch_end({"left": 0.5, "right": 0.45})  # now left stalls (r=1.0), right halves (0.5)
    assert dwa.weights()["left"] > 1.0 > dwa.weights()["right"]


def test_multitask_feeds_dwa_with_mean_training_losses_and_logs_them():
    task = MultiTask(["left", "right"], "dwa")
    logits = {"left": torch.tensor([[2.0, 0.0]]), "right": torch.tensor([[0.0, 0.0]])}
    targets = {"left": torch.tensor([0]), "right": torch.tensor([1])}
    left_loss = math.log(1 + math.exp(-2.0))
    for epoch in range(3):
        task.loss(logits, targets)
        with torch.no_grad():  # evaluation calls do not count as training
            task.loss({"left": torch.tensor([[0.0, 9.0]]), "right": logits["right"]}, targets)
        history = [{"epoch": epoch}]
        task.on_epoch_end(history)
    assert history[-1]["left/train_loss"] == pytest.approx(left_loss)
    assert history[-1]["right/train_loss"] == pytest.approx(math.log(2))
    assert task.current_weights() == pytest.approx({"left": 1.0, "right": 1.0})  # equal ratios


def test_multitask_metrics_per_task():
    task = MultiTask({"left": 2, "right": 3})
    assert task.main_metric == "mean_accuracy"
    meter = task.meter()
    outputs = {"left": torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]),
               "right": torch.tensor([[0.0, 0.0, 5.0]] * 4)}
    targets = {"left": torch.tensor([0, 1, 1, 1]), "right": torch.tensor([2, 2, 2, 0]),
               "extra": torch.tensor([0, 0, 0, 0])}  # labels for tasks the model lacks are ignored
    meter.update(outputs, targets)
    result = meter.compute()
    assert result["left/accuracy"] == 0.5 and result["right/accuracy"] == 0.75
    assert result["mean_accuracy"] == pytest.approx(0.625)
    expected = torch.nn.functional.cross_entropy(outputs["left"], targets["left"]).item()
    assert result["left/loss"] == pytest.approx(expected, rel=1e-5)
    assert result["val_loss"] == pytest.approx(result["left/loss"] + result["right/loss"])
    with pytest.raises(LeannetError, match="dict outputs and dict targets"):
        task.loss(outputs["left"], targets)
    with pytest.raises(LeannetError, match="targets lack task"):
        task.loss(outputs, {"left": targets["left"]})
    with pytest.raises(LeannetError, match="cannot be combined"):
        MultiTask(["left"], "dwa", weights={"left": 2.0})
