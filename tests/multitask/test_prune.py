"""Pruning multi-task models: heads protected, task weights in data criteria, tied soft-sharing
plans, and a per-task guard that fires for the task that drops."""
import numpy as np
import pytest
import torch

import leannet
from leannet.data import get_source
from leannet.data.loaders import make_loaders
from leannet.errors import LeannetError
from leannet.measure import count_macs
from leannet.models import create_model
from leannet.multitask import MultiTask, setup
from leannet.multitask.prune import prune_tied, tied_column_planner, tied_plan
from leannet.prune import Pruner, Target
from leannet.iterative import iterative_prune
from leannet.train import evaluate, fit

SMALL = {"channels": [8, 16], "hidden": 32}
X = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def digits():
    source = get_source("multi-digits")
    return source, make_loaders(source, 64, seed=0)


def test_hard_sharing_prunes_with_every_head_protected():
    torch.manual_seed(0)
    model = create_model("hard_sharing", tasks={"left": 10, "parity": 2}, trunk_kwargs=SMALL,
                         head_hidden=16).eval()
    before = count_macs(model, (1, 1, 28, 28))
    pruner = Pruner(model, X, "l1")
    plan = pruner.plan(Target(macs=0.5))
    pruner.apply(plan, verify=True)
    assert model.heads["left"][2].out_features == 10 and model.heads["parity"][2].out_features == 2
    assert {k: tuple(v.shape) for k, v in model(X).items()} == {"left": (4, 10), "parity": (4, 2)}
    assert count_macs(model, (1, 1, 28, 28)) / before == pytest.approx(0.5, abs=0.05)
    assert model.trunk.fc1.out_features < 32  # the shared layer feeding both heads was pruned


def test_task_weights_flow_into_taylor_importance(digits):
    source, (train, _) = digits
    model, task = setup.build(source, "simple_cnn", SMALL, "hard", head_hidden=16)
    scores = {}
    for weights in ({"left": 1.0, "right": 0.0}, {"left": 0.0, "right": 1.0}):
        pruner = Pruner(model, X, "taylor", task_weights=weights)
        pruner.calibrate(train, task.task_losses, max_batches=2)
        scores[tuple(weights.values())] = pruner.scores()
    left_only, right_only = scores[(1.0, 0.0)], scores[(0.0, 1.0)]
    assert np.all(left_only["heads.right.0"] == 0) and np.any(left_only["heads.left.0"] > 0)
    assert np.all(right_only["heads.left.0"] == 0) and np.any(right_only["heads.right.0"] > 0)
    with pytest.raises(LeannetError, match="unknown tasks"):
        Pruner(model, X, "taylor", task_weights={"middle": 1.0})


def test_tied_plan_keeps_the_same_channels_in_every_column(tmp_path):
    torch.manual_seed(0)
    model = create_model("soft_sharing", tasks={"left": 10, "right": 10}, column_kwargs=SMALL,
                         head_hidden=16, penalty="trace").eval()
    summed = {}
    for name, values in Pruner(model, X, "l1").scores().items():
        if name.startswith("columns."):
            relative = name.split(".", 2)[2]
            summed[relative] = summed.get(relative, 0) + values
    plan = tied_plan(model, X, Target(macs=0.5), "l1")
    assert plan.meta["tied_columns"] == ["left", "right"]
    relative = {name.split(".", 2)[2] for name in plan.groups}
    for name in relative:
        left, right = (plan.groups[f"columns.{t}.{name}"]["keep"] for t in ("left", "right"))
        assert left == right
        removed = np.setdiff1d(np.arange(len(summed[name])), left)
        if removed.size:  # kept channels are the most important by the summed score
            assert summed[name][left].min() >= summed[name][removed].max() - 1e-9
    prune_tied(model, X, Target(macs=0.5), "l1")
    assert model.penalty().isfinite()  # shapes still agree, so the penalty is defined
    leannet.save(model, tmp_path / "soft")
    loaded = leannet.load(tmp_path / "soft")
    assert all(torch.equal(model(X)[t], loaded(X)[t]) for t in ("left", "right"))


def test_tied_plan_refuses_non_soft_models():
    hard = create_model("hard_sharing", tasks={"left": 10}, trunk_kwargs=SMALL)
    with pytest.raises(LeannetError, match="for SoftSharing models"):
        tied_plan(hard, X, Target(macs=0.5))
    soft = create_model("soft_sharing", tasks={"left": 10, "right": 10}, column_kwargs=SMALL)
    with pytest.raises(LeannetError, match="'middle' that the model does not have"):
        tied_plan(soft, X, Target(macs=0.5), task_weights={"middle": 1.0})


def test_per_task_guard_fires_for_the_task_that_drops(digits):
    source, (train, val) = digits
    model, task = setup.build(source, "simple_cnn", SMALL, "hard")
    fit(model, train, val, task, 2, lr=0.02, progress=False)

    def per_task(candidate):
        metrics = evaluate(candidate, val, MultiTask(["left", "right"]))
        return {t: metrics[f"{t}/accuracy"] for t in ("left", "right")}

    outcome = iterative_prune(model, lambda m: None, per_task, Target(macs=0.2), X,
                              criterion="l1", steps=1, min_step=0.5,
                              max_drop={"left": 1.0, "right": 0.0})
    first = outcome.steps[0]
    assert first["status"] == "rolled_back" and first["guard_broken_by"] == ["right"]
    assert first["metrics"]["right"] < outcome.baseline["metrics"]["right"]
    with pytest.raises(LeannetError, match="max-drop names middle"):
        iterative_prune(model, lambda m: None, per_task, Target(macs=0.5), X,
                        max_drop={"middle": 0.1})


def test_iterative_prune_ties_soft_sharing_columns(digits, tmp_path):
    source, (train, val) = digits
    model, task = setup.build(source, "simple_cnn", SMALL, "soft", "l2", 1e-2, head_hidden=16)

    def finetune(candidate):  # the penalty needs equal column shapes at every step
        fit(candidate, train, val, task, 1, lr=0.02, seed=None, progress=False)

    def per_task(candidate):
        metrics = evaluate(candidate, val, MultiTask(["left", "right"]))
        return {t: metrics[f"{t}/accuracy"] for t in ("left", "right")}

    outcome = iterative_prune(model, finetune, per_task, Target(macs=0.6), X, criterion="l1",
                              steps=2, max_drop=1.0, checkpoint_dir=tmp_path / "run",
                              planner=tied_column_planner(model))
    pruned = outcome.model
    assert outcome.target_reached and [s["status"] for s in outcome.steps] == ["accepted"] * 2
    assert all(p["meta"]["tied_columns"] == ["left", "right"]
               for p in pruned.leannet_config["plans"])
    left, right = (dict(pruned.columns[t].named_parameters()) for t in ("left", "right"))
    assert {k: v.shape for k, v in left.items()} == {k: v.shape for k, v in right.items()}
    assert count_macs(pruned, (1, 1, 28, 28)) / count_macs(model, (1, 1, 28, 28)) < 0.65
