"""The iterative loop's parts: RunState round-trips state.json, RunSettings and Target check
themselves, planners are injected, and "channels" means the same to the planner and the log."""
import json

import pytest
import torch

import leannet
from leannet.errors import LeannetError
from leannet.iterative import RunSettings, RunState, iterative_prune
from leannet.prune import Pruner, Target
from leannet.prune.planners import by_layer_ratios, by_score


def _state() -> RunState:
    baseline = {"macs": 100, "metric": 0.9, "metrics": {"accuracy": 0.9}}
    return RunState("abc", baseline, current=dict(baseline), pointer=1, attempt=3, fraction=0.7,
                    last_good="checkpoints/step_003", steps=[{"step": 1}], step_limit=0.05,
                    group_sizes={"conv1": 16})


def test_run_state_round_trips_through_json(tmp_path):
    state = _state()
    path = tmp_path / "state.json"
    path.write_text(json.dumps(state.to_dict()))
    assert RunState.read(path) == state


@pytest.mark.parametrize("change,message", [
    ({"attempt": "3"}, "field 'attempt'"),
    ({"done": 1}, "field 'done'"),
    ({"fraction": float("nan")}, "not a finite number"),
    ({"step_limit": float("inf")}, "not a finite number"),
    ({"last_good": "../../etc"}, "not a checkpoint of this run"),
])
def test_run_state_refuses_bad_fields_in_one_line(change, message):
    data = _state().to_dict() | change
    with pytest.raises(LeannetError, match=message) as err:
        RunState.from_dict(data)
    assert "\n" not in str(err.value)


def test_settings_check_themselves_and_name_unknown_options():
    with pytest.raises(LeannetError, match="unknown schedule"):
        RunSettings(schedule="sometimes")
    with pytest.raises(LeannetError, match="max-drop must be >= 0"):
        RunSettings(max_drop={"a": -1.0})
    with pytest.raises(LeannetError, match="unknown iterative_prune option.*stepz"):
        RunSettings.make(stepz=3)
    base = RunSettings(steps=2)
    assert RunSettings.make(base) is base and RunSettings.make(base, seed=4).steps == 2


def test_target_reduction_is_the_one_target_check():
    assert Target(macs=0.5).reduction() == ("macs", 0.5)
    for bad, message in ((Target(macs=1.0), "already met"), (Target(params=float("nan")), "impossible"),
                         (Target(), "exactly one"), (Target(macs=0.5, channels=0.5), "exactly one")):
        with pytest.raises(LeannetError, match=message):
            bad.reduction()
    kept = Target(macs=0.5, round_to=8).keeping("params", 0.3, min_fraction=0.2)
    assert (kept.macs, kept.params, kept.round_to, kept.min_fraction) == (None, 0.3, 8, 0.2)


def _model_and_inputs():
    torch.manual_seed(0)
    return leannet.create_model("simple_cnn", channels=[16, 32], hidden=32, image_size=8), \
        torch.randn(2, 1, 8, 8)


def test_the_step_log_counts_channels_as_the_planner_does():
    model, x = _model_and_inputs()
    seen = []

    def planner(pruner, target):  # injected: records what it was asked, then plans by score
        seen.append(target.kind())
        return by_score(pruner, target)

    outcome = iterative_prune(model, lambda m: None, lambda m: 1.0, Target(channels=0.5), x,
                              steps=1, planner=planner, verify=True)
    assert seen and all(kind == "channels" for kind, _ in seen)
    graph_channels = Pruner(outcome.model, x).graph.prunable_channels()
    assert outcome.final["channels"] == graph_channels
    # 16 + 32 conv channels and the 32 of the hidden linear layer (the 10 logits are outputs)
    assert outcome.baseline["channels"] == Pruner(model, x).graph.prunable_channels() == 80
    assert outcome.final["channels"] / outcome.baseline["channels"] == pytest.approx(0.5, abs=0.05)


def test_layer_ratio_planner_spares_fragile_groups():
    model, x = _model_and_inputs()
    pruner = Pruner(model, x)
    names = [g.name for g in pruner.groups if g.prunable]
    keep = {names[0]: {"size": 16, "keep": 1.0}, names[1]: {"size": 32, "keep": 0.25}}
    plan = by_layer_ratios(keep)(pruner, Target(macs=0.7))
    assert names[0] not in plan.groups and names[1] in plan.groups
    assert plan.meta["macs_fraction"] <= 0.7 + 1e-6
