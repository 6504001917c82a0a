"""iterative_prune: schedules, the guard's rollback, per-task guards, checkpoints and resume."""
import pytest
import torch
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

import leannet
from leannet.errors import LeannetError
from leannet.prune import Target
from leannet.iterative import iterative_prune, schedule_fractions
from leannet.train.fit import evaluate, fit
from leannet.train.tasks import ClassificationTask


@pytest.fixture(scope="module")
def digits():
    """Real 8x8 digits as 1x8x8 tensors: 1,400 to train on, the rest to evaluate."""
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target)
    return TensorDataset(x[:1400], y[:1400]), DataLoader(TensorDataset(x[1400:], y[1400:]),
                                                         batch_size=400)


def _loader(train_set):
    """A shuffled loader whose order comes from the global RNG, which each attempt reseeds."""
    seed = int(torch.randint(0, 2**31 - 1, (1,)))
    return DataLoader(train_set, batch_size=100, shuffle=True,
                      generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def trained(digits):
    train, val = digits
    torch.manual_seed(0)
    model = leannet.create_model("simple_cnn", channels=[16, 32], hidden=32, image_size=8)
    fit(model, _loader(train), val, ClassificationTask(), 4, lr=0.1, progress=False)
    return model


def _callables(digits):
    train, val = digits
    task = ClassificationTask()

    def finetune(model):
        fit(model, _loader(train), val, task, 1, lr=0.02, seed=None, progress=False)

    def score(model):
        return evaluate(model, val, task)["accuracy"]

    return finetune, score


def test_schedules():
    assert schedule_fractions(0.5, 1, "equal") == [0.5]
    assert schedule_fractions(0.5, 4, "oneshot") == [0.5]
    assert schedule_fractions(0.5, 5, "equal") == pytest.approx([0.9, 0.8, 0.7, 0.6, 0.5])
    geometric = schedule_fractions(0.25, 2, "geometric")
    assert geometric == pytest.approx([0.5, 0.25])


def test_steps_reach_the_target_and_leave_the_input_model_alone(trained, digits):
    finetune, score = _callables(digits)
    macs_before = leannet.measure.count_macs(trained, (1, 1, 8, 8))
    outcome = iterative_prune(trained, finetune, score, Target(macs=0.5), torch.randn(2, 1, 8, 8),
                              steps=2, max_drop=1.0)
    assert [s["status"] for s in outcome.steps] == ["accepted", "accepted"]
    assert outcome.target_reached
    assert outcome.final["macs"] / outcome.baseline["macs"] == pytest.approx(0.5, abs=0.03)
    assert leannet.measure.count_macs(trained, (1, 1, 8, 8)) == macs_before
    assert outcome.model(torch.randn(3, 1, 8, 8)).shape == (3, 10)
    assert outcome.baseline["macs"] == macs_before


def test_guard_rolls_back_a_step_that_is_too_large_and_halves_it(trained, digits):
    _, score = _callables(digits)
    baseline = score(trained)
    outcome = iterative_prune(trained, lambda m: None, score, Target(macs=0.05),
                              torch.randn(2, 1, 8, 8), schedule="oneshot", max_drop=0.02,
                              min_step=0.1)
    statuses = [s["status"] for s in outcome.steps]
    assert statuses[0] == "rolled_back"
    first, second = outcome.steps[0], outcome.steps[1]
    assert baseline - first["metric"] > 0.02 and first["guard_broken_by"] == ["metric"]
    assert (1 - second["target_fraction"]) == pytest.approx((1 - first["target_fraction"]) / 2)
    assert not outcome.target_reached
    assert baseline - outcome.final["metric"] <= 0.02 + 1e-9  # the final model obeys the guard


def test_per_task_guard_names_the_task_that_broke_it(trained, digits):
    _, score = _callables(digits)

    def two_tasks(model):
        accuracy = score(model)
        return {"easy": 1.0, "hard": accuracy}

    outcome = iterative_prune(trained, lambda m: None, two_tasks, Target(macs=0.05),
                              torch.randn(2, 1, 8, 8), schedule="oneshot",
                              max_drop={"easy": 0.0, "hard": 0.02}, min_step=0.3)
    assert outcome.steps[0]["status"] == "rolled_back"
    assert outcome.steps[0]["guard_broken_by"] == ["hard"]
    with pytest.raises(LeannetError, match="max-drop names left"):
        iterative_prune(trained, lambda m: None, two_tasks, Target(macs=0.5),
                        torch.randn(2, 1, 8, 8), max_drop={"left": 0.1})


class Crash(Exception):
    pass


def test_a_killed_run_resumes_to_the_same_result(trained, digits, tmp_path):
    finetune, score = _callables(digits)
    example = torch.randn(2, 1, 8, 8)
    kwargs = dict(steps=3, max_drop=1.0, seed=7)
    reference = iterative_prune(trained, finetune, score, Target(macs=0.4), example,
                                checkpoint_dir=tmp_path / "a", **kwargs)
    calls = {"n": 0}

    def dies_in_third_step(model):
        calls["n"] += 1
        if calls["n"] == 3:
            raise Crash()  # the process dies mid-step, after two completed steps
        finetune(model)

    with pytest.raises(Crash):
        iterative_prune(trained, dies_in_third_step, score, Target(macs=0.4), example,
                        checkpoint_dir=tmp_path / "b", **kwargs)
    resumed = iterative_prune(trained, finetune, score, Target(macs=0.4), example,
                              checkpoint_dir=tmp_path / "b", resume=True, **kwargs)
    assert [s["metric"] for s in resumed.steps] == [s["metric"] for s in reference.steps]
    measured = {"latency_ms", "latency_detail", "latency"}  # timings differ run to run; all else is identical
    assert {k: v for k, v in resumed.final.items() if k not in measured} == \
        {k: v for k, v in reference.final.items() if k not in measured}
    x = torch.randn(5, 1, 8, 8)
    assert torch.equal(resumed.model.eval()(x), reference.model.eval()(x))
    with pytest.raises(LeannetError, match="holds a different run"):
        iterative_prune(trained, finetune, score, Target(macs=0.3), example,
                        checkpoint_dir=tmp_path / "b", resume=True, **kwargs)


def test_bad_requests_are_refused(trained, digits):
    finetune, score = _callables(digits)
    example = torch.randn(2, 1, 8, 8)
    with pytest.raises(LeannetError, match="already met"):
        iterative_prune(trained, finetune, score, Target(macs=1.5), example)
    with pytest.raises(LeannetError, match="max-drop must be >= 0"):
        iterative_prune(trained, finetune, score, Target(macs=0.5), example, max_drop=-0.1)
    with pytest.raises(LeannetError, match="data-driven"):
        iterative_prune(trained, finetune, score, Target(macs=0.5), example, criterion="apoz")
    with pytest.raises(LeannetError, match="unknown schedule"):
        iterative_prune(trained, finetune, score, Target(macs=0.5), example, schedule="sometimes")


def test_min_fraction_is_a_floor_of_the_original_layers_not_compounded(trained, digits):
    import copy

    finetune, score = _callables(digits)
    model = copy.deepcopy(trained)
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    first.weight.data *= 1e-3  # l1 ranks this layer's channels lowest at every step
    before = first.out_channels
    outcome = iterative_prune(model, finetune, score, Target(channels=0.7, min_fraction=0.5),
                              torch.randn(2, 1, 8, 8), steps=3, max_drop=1.0)
    after = next(m for m in outcome.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert [s["status"] for s in outcome.steps].count("accepted") >= 2
    assert after.out_channels == before // 2  # at the floor, and not below it


def test_fingerprints_survive_new_default_fields_and_old_folders_resume(trained, digits,
                                                                        tmp_path):
    """A run folder is told apart by the settings that differ from their defaults, so a Target
    field added later (at a default that keeps the old behaviour) does not orphan older folders;
    a folder fingerprinted the older way (every field, the target's repr) still resumes."""
    import dataclasses
    import json

    from leannet.iterative import RunSettings, _fingerprint

    @dataclasses.dataclass
    class LaterTarget(Target):  # a release that added one more option
        future_option: float = 0.0

    settings = RunSettings(steps=2, max_drop=1.0)
    now = settings.fingerprint_fields(Target(macs=0.4))
    assert settings.fingerprint_fields(LaterTarget(macs=0.4)) == now
    assert settings.fingerprint_fields(LaterTarget(macs=0.4, future_option=1.0)) != now
    assert settings.fingerprint_fields(Target(macs=0.4, latency_tradeoff=0.0)) != now

    finetune, score = _callables(digits)
    example = torch.randn(2, 1, 8, 8)
    done = iterative_prune(trained, finetune, score, Target(macs=0.4), example, steps=2,
                           max_drop=1.0, checkpoint_dir=tmp_path)
    state_file = tmp_path / "state.json"
    state = json.loads(state_file.read_text())
    state["fingerprint"] = _fingerprint(trained, settings.fingerprint_fields(Target(macs=0.4),
                                                                            legacy=True))
    state_file.write_text(json.dumps(state))
    again = iterative_prune(trained, finetune, score, Target(macs=0.4), example, steps=2,
                            max_drop=1.0, checkpoint_dir=tmp_path, resume=True)
    assert [s["metric"] for s in again.steps] == [s["metric"] for s in done.steps]
    state["fingerprint"] = "0" * 16
    state_file.write_text(json.dumps(state))
    with pytest.raises(LeannetError, match="holds a different run"):
        iterative_prune(trained, finetune, score, Target(macs=0.4), example, steps=2,
                        max_drop=1.0, checkpoint_dir=tmp_path, resume=True)
