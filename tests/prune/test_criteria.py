"""Every criterion ranks the channel it should last, on hand-set weights or real digits data."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from leannet.errors import LeannetError
from leannet.prune import CRITERIA, Pruner, Target


class Net(nn.Module):
    """conv(1->8)+BN+ReLU -> conv(8->8)+BN+ReLU -> pool -> linear: small enough to train fast."""

    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.c2, self.b2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = F.relu(self.b1(self.c1(x)))
        x = F.relu(self.b2(self.c2(x)))
        return self.fc(x.mean((2, 3)))


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target)
    return x, y


@pytest.fixture(scope="module")
def trained(digits):
    torch.manual_seed(0)
    x, y = digits
    model = Net()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    order = torch.Generator().manual_seed(0)
    for _ in range(10):
        perm = torch.randperm(1500, generator=order)
        for i in range(0, 1500, 50):
            opt.zero_grad()
            F.cross_entropy(model(x[perm[i:i + 50]]), y[perm[i:i + 50]]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():  # 8 channels and mean pooling: well above chance (0.1), not great
        assert (model(x[1500:]).argmax(1) == y[1500:]).float().mean() > 0.5
    return model


def _scores(model, criterion, loader=None, **kw):
    pruner = Pruner(model, torch.zeros(2, 1, 8, 8), criterion=criterion, **kw)
    if loader is not None:
        pruner.calibrate(loader)
    return pruner, pruner.scores()


def test_weight_criteria_rank_the_weakest_filter_last():
    model = Net()
    with torch.no_grad():
        model.c1.weight[3] *= 0.01                      # l1 / l2: smallest filter
        model.b1.weight.fill_(1.0)
        model.b1.weight[5] = 0.01                       # bn_scale: smallest gamma
    for criterion, weakest in (("l1", 3), ("l2", 3), ("bn_scale", 5)):
        _, scores = _scores(model, criterion)
        assert int(np.argmin(scores["c1"])) == weakest, criterion
        assert scores["c1"].mean() == pytest.approx(1.0)  # normalised per group


def test_fpgm_prunes_the_filter_nearest_the_geometric_median():
    model = Net()
    with torch.no_grad():
        u, v = torch.linalg.qr(torch.randn(9, 2))[0].T
        for i in range(8):  # seven filters evenly on a circle, and its centre
            angle = torch.tensor(2 * torch.pi * i / 7)
            model.c1.weight[i] = (torch.cos(angle) * u + torch.sin(angle) * v).view(1, 3, 3)
        model.c1.weight[6] = 0.0                         # the geometric median
    _, scores = _scores(model, "fpgm")
    assert int(np.argmin(scores["c1"])) == 6


def test_random_is_seeded():
    model = Net()
    a, b, c = (_scores(model, "random", seed=s)[1]["c1"] for s in (1, 1, 2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def _loader(digits, n=400, batch=100):
    x, y = digits
    return DataLoader(TensorDataset(x[:n], y[:n]), batch_size=batch)


def test_data_criteria_find_a_dead_channel(trained, digits):
    model = Net()
    model.load_state_dict(trained.state_dict())
    with torch.no_grad():
        model.b1.bias[2] = -100.0     # channel 2 of c1 is always zero after ReLU
        model.c2.weight[:, 2] *= 1.0
    for criterion in ("mean_activation", "apoz", "taylor"):
        _, scores = _scores(model, criterion, _loader(digits))
        assert int(np.argmin(scores["c1"])) == 2, criterion
        assert scores["c1"][2] == pytest.approx(0.0, abs=1e-9)


def test_calibration_accumulates_over_the_whole_loader(trained, digits):
    whole = _scores(trained, "apoz", _loader(digits, 400, 400))[1]
    batched = _scores(trained, "apoz", _loader(digits, 400, 50))[1]
    first_batch_only = _scores(trained, "apoz", _loader(digits, 50, 50))[1]
    assert np.allclose(whole["c2"], batched["c2"])
    assert not np.allclose(whole["c2"], first_batch_only["c2"])
    capped = Pruner(trained, torch.zeros(2, 1, 8, 8), criterion="apoz")
    capped.calibrate(_loader(digits, 400, 50), max_batches=1)
    assert np.allclose(capped.scores()["c2"], first_batch_only["c2"])


def test_taylor_uses_the_given_loss_and_task_weights(digits):
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 8, 3, padding=1)
            self.a, self.b = nn.Linear(8, 10), nn.Linear(8, 2)

        def forward(self, x):
            f = F.relu(self.conv(x)).mean((2, 3))
            return {"digit": self.a(f), "odd": self.b(f)}

    model = TwoHeads()
    with torch.no_grad():
        model.a.weight[:, :4] = 0.0   # channels 0-3 only matter to "odd"
        model.b.weight[:, 4:] = 0.0   # channels 4-7 only matter to "digit"

    def loss_fn(out, y):
        return {"digit": F.cross_entropy(out["digit"], y), "odd": F.cross_entropy(out["odd"], y % 2)}

    x = torch.zeros(2, 1, 8, 8)
    only_digit = Pruner(model, x, criterion="taylor", task_weights={"digit": 1.0, "odd": 0.0})
    scores = only_digit.calibrate(_loader(digits), loss_fn).scores()["conv"]
    assert scores[:4].max() == pytest.approx(0.0) and scores[4:].min() > 0
    only_odd = Pruner(model, x, criterion="taylor", task_weights={"digit": 0.0, "odd": 1.0})
    scores = only_odd.calibrate(_loader(digits), loss_fn).scores()["conv"]
    assert scores[4:].max() == pytest.approx(0.0) and scores[:4].min() > 0
    with pytest.raises(LeannetError, match="unknown tasks"):
        Pruner(model, x, task_weights={"colour": 1.0})


def test_callable_criterion_and_every_named_criterion_prunes(trained, digits):
    def last_channels_least(group, model):
        return torch.arange(group.size, 0, -1, dtype=torch.float32)

    model = Net()
    model.load_state_dict(trained.state_dict())
    pruner = Pruner(model, torch.zeros(2, 1, 8, 8), criterion=last_channels_least,
                    global_ranking=False)
    plan = pruner.plan(Target(channels=0.5))
    assert plan.groups["c1"]["keep"] == [0, 1, 2, 3]
    for criterion in CRITERIA:
        model = Net()
        model.load_state_dict(trained.state_dict())
        pruner = Pruner(model, torch.zeros(2, 1, 8, 8), criterion=criterion)
        pruner.calibrate(_loader(digits, 200))
        pruner.apply(pruner.plan(Target(macs=0.5)), verify=True)
        assert model.c1.out_channels + model.c2.out_channels < 16


def test_data_criterion_without_calibration_and_unknown_names():
    with pytest.raises(LeannetError, match="calibrate"):
        Pruner(Net(), torch.zeros(2, 1, 8, 8), criterion="apoz").plan(Target(macs=0.5))
    with pytest.raises(LeannetError, match="l1, l2, fpgm"):
        Pruner(Net(), torch.zeros(2, 1, 8, 8), criterion="magnitude")


def test_group_l1_counts_every_member_of_the_channel():
    model = Net()
    with torch.no_grad():
        model.c1.weight.copy_(torch.sign(torch.randn_like(model.c1.weight)) * 0.1)  # equal L1
        model.c2.weight[:, 4] *= 0.01             # channel 4 barely reaches its consumer
    l1 = _scores(model, "l1")[1]["c1"]
    assert np.allclose(l1, 1.0)                   # filter magnitude alone can't tell them apart
    scores = _scores(model, "group_l1")[1]["c1"]
    assert int(np.argmin(scores)) == 4
    per_member = np.stack([model.c1.weight.abs().sum((1, 2, 3)).detach().numpy(),
                           model.b1.weight.abs().detach().numpy(),
                           model.c2.weight.abs().sum((0, 2, 3)).detach().numpy()]).mean(0)
    assert np.allclose(scores, per_member / per_member.mean())
    squared = _scores(model, "group_l2")[1]["c1"]
    assert int(np.argmin(squared)) == 4 and not np.allclose(squared, scores)


class SiLUNet(Net):
    """Net with SiLU: no activation output is ever exactly zero."""

    def forward(self, x):
        x = F.silu(self.b1(self.c1(x)))
        x = F.silu(self.b2(self.c2(x)))
        return self.fc(x.mean((2, 3)))


def test_apoz_is_defined_where_no_relu_follows(digits):
    model = SiLUNet()
    with torch.no_grad():
        model.b1.bias.fill_(2.0)
        model.b1.bias[5] = -4.0                   # mostly negative: what a ReLU would zero
    _, scores = _scores(model, "apoz", _loader(digits))
    assert int(np.argmin(scores["c1"])) == 5      # not the lowest-numbered channel
    assert scores["c1"][5] < 0.5 * scores["c1"][0]


def test_criterion_objects_registry_and_callable_fallback():
    from leannet.prune.criteria import Criterion, get_criterion, register_criterion
    from leannet.prune.criteria.weights import RowCriterion

    @register_criterion
    class MaxAbs(RowCriterion):
        name = "test_max_abs"

        def rows(self, rows):
            return rows.abs().amax(1)

    model = Net()
    with torch.no_grad():
        model.c1.weight[6, 0, 0, 0] = 5.0         # one huge weight: max-abs keeps channel 6
    named = _scores(model, "test_max_abs")[1]["c1"]
    instance = _scores(model, MaxAbs())[1]["c1"]
    assert np.array_equal(named, instance) and int(np.argmax(named)) == 6
    assert isinstance(get_criterion("l1"), Criterion)

    def only_c2(group, model):                    # None: the group falls back to L1
        return np.arange(group.size, dtype=float) + 1 if group.name == "c2" else None

    scores = _scores(model, only_c2)[1]
    assert np.allclose(scores["c1"], _scores(model, "l1")[1]["c1"])
    assert np.allclose(scores["c2"], (np.arange(8) + 1) / 4.5)
