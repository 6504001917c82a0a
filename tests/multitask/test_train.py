"""Training multi-task models end to end on multi-digits through `setup.build` and `leannet.train.fit`."""
import pytest
import torch

import leannet
from leannet.data import get_source
from leannet.data.loaders import make_loaders
from leannet.errors import LeannetError
from leannet.multitask import setup
from leannet.train import evaluate, fit, task_for

SMALL = {"channels": [8, 16], "hidden": 32}


@pytest.fixture(scope="module")
def digits():
    source = get_source("multi-digits")
    return source, make_loaders(source, 64, seed=0)


@pytest.mark.parametrize("sharing, penalty, weighting", [
    ("hard", None, "fixed"), ("soft", "l2", "uncertainty"), ("soft", "trace", "dwa")])
def test_sharing_trains_and_logs_every_task(digits, tmp_path, sharing, penalty, weighting):
    source, (train, val) = digits
    model, task = setup.build(source, "simple_cnn", SMALL, sharing, penalty, 1e-3, weighting)
    history = fit(model, train, val, task, 2, lr=0.02, progress=False, out_dir=tmp_path)
    last = history[-1]
    for t in ("left", "right"):
        assert {f"{t}/accuracy", f"{t}/loss", f"{t}/train_loss", f"{t}/weight"} <= set(last)
        assert last[f"{t}/accuracy"] > 0.3  # chance is 0.1
    assert last["mean_accuracy"] == pytest.approx((last["left/accuracy"]
                                                   + last["right/accuracy"]) / 2)
    loaded = leannet.load(tmp_path / "model")
    again = evaluate(loaded, val, task_for(loaded, source))
    best = max(h["mean_accuracy"] for h in history)
    assert again["mean_accuracy"] == pytest.approx(best)


def test_soft_sharing_strength_pulls_columns_together(digits):
    source, (train, val) = digits
    penalties = {}
    for strength in (0.0, 1.0):
        torch.manual_seed(0)
        model, task = setup.build(source, "simple_cnn", SMALL, "soft", "l2", strength)
        fit(model, train, val, task, 1, lr=0.02, progress=False)
        penalties[strength] = model.penalty().item()
    assert penalties[1.0] < 0.5 * penalties[0.0]


def test_build_rejects_bad_input(digits):
    source, _ = digits
    with pytest.raises(LeannetError, match="not multi-task"):
        setup.build(get_source("digits"), "simple_cnn", SMALL, "hard")
    with pytest.raises(LeannetError, match="unknown sharing 'medium'"):
        setup.build(source, "simple_cnn", SMALL, "medium")
    with pytest.raises(LeannetError, match="unknown soft-sharing penalty 'l1'"):
        setup.build(source, "simple_cnn", SMALL, "soft", "l1")
    with pytest.raises(LeannetError, match="strength must be a number >= 0"):
        setup.build(source, "simple_cnn", SMALL, "soft", "l2", -1.0)
    with pytest.raises(LeannetError, match="'middle' that the model does not have"):
        setup.build(source, "simple_cnn", SMALL, "hard", task_weights={"middle": 2.0})
    model, _ = setup.build(source, "simple_cnn", SMALL, "hard")
    with pytest.raises(LeannetError, match="not a multi-task model"):
        setup.task_for(leannet.create_model("simple_cnn"), source)
    assert setup.task_for(model, source).tasks == ["left", "right"]
