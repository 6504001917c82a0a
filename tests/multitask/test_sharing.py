"""Hard and soft sharing: penalties against hand computations, safe gradients, bad input, save/load."""
import math

import pytest
import torch
from torch import nn

import leannet
from leannet.errors import LeannetError
from leannet.models import create_model
from leannet.multitask import HardSharing, SoftSharing, l2_penalty, trace_norm_penalty


def linear(weight, bias):
    """A Linear(2, 1) with the given weights."""
    layer = nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([weight], dtype=torch.float32))
        layer.bias.copy_(torch.tensor([bias], dtype=torch.float32))
    return layer


def test_l2_penalty_matches_hand_computation():
    two = SoftSharing({"a": linear([1, 2], 3), "b": linear([0, 0], 1)}, "l2", strength=0.5)
    # weight: 1 + 4, bias: (3 - 1)^2 = 4
    assert two.penalty().item() == pytest.approx(9.0)
    assert two.auxiliary_loss().item() == pytest.approx(4.5)
    three = SoftSharing({"a": linear([1, 2], 3), "b": linear([0, 0], 1), "c": linear([1, 0], 0)})
    # pairs ab = 9, ac = 0 + 4 + 9 = 13, bc = 1 + 0 + 1 = 2
    assert three.penalty().item() == pytest.approx(24.0)


def test_trace_penalty_matches_hand_computation():
    rank_one = SoftSharing({"a": linear([1, 2], 3), "b": linear([0, 0], 1)}, "trace")
    # weight stack [[1, 2], [0, 0]] has one singular value sqrt(5); bias stack [[3], [1]]: sqrt(10)
    assert rank_one.penalty().item() == pytest.approx(math.sqrt(5) + math.sqrt(10), rel=1e-6)
    diagonal = SoftSharing({"a": linear([3, 0], 0), "b": linear([0, 4], 0)}, "trace")
    assert diagonal.penalty().item() == pytest.approx(7.0)  # singular values 3 and 4; bias 0


def test_trace_norm_value_and_gradient_match_torch_where_defined():
    torch.manual_seed(0)
    m = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)
    ours = trace_norm_penalty([m])
    (g_ours,) = torch.autograd.grad(ours, m)
    reference = torch.linalg.matrix_norm(m, "nuc")
    (g_ref,) = torch.autograd.grad(reference, m)
    assert ours.item() == pytest.approx(reference.item(), rel=1e-10)
    assert torch.allclose(g_ours, g_ref, atol=1e-10)


def test_gradients_are_finite_and_exact_when_columns_are_equal():
    theta = torch.tensor([3.0, 4.0], dtype=torch.float64)
    stack = theta.repeat(3, 1).requires_grad_(True)  # three equal task rows
    # repeated (zero) singular values: SVD's own backward is ill-defined here
    value = trace_norm_penalty([stack])
    (grad,) = torch.autograd.grad(value, stack)
    # ||1 theta^T||_* = sqrt(3) * ||theta|| = 5 sqrt(3); d/d row = theta / (sqrt(3) ||theta||)
    assert value.item() == pytest.approx(5 * math.sqrt(3))
    assert torch.allclose(grad, (theta / (5 * math.sqrt(3))).repeat(3, 1))
    (g_l2,) = torch.autograd.grad(l2_penalty([stack]), stack)
    assert torch.equal(g_l2, torch.zeros_like(stack))


def test_soft_sharing_model_penalty_backward_without_nan_at_equal_columns():
    model = create_model("soft_sharing", tasks={"left": 10, "right": 10}, penalty="trace",
                         column_kwargs={"channels": [4, 8], "hidden": 16})
    model.columns["right"].load_state_dict(model.columns["left"].state_dict())
    model.auxiliary_loss().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    heads = [p.grad for n, p in model.named_parameters() if ".head." in n]
    assert all(g is None for g in heads)  # task-specific heads are not penalised


def test_forward_returns_one_output_per_task():
    x = torch.randn(2, 1, 28, 28)
    hard = create_model("hard_sharing", tasks={"left": 10, "parity": 2}, head_hidden=8,
                        trunk_kwargs={"channels": [4, 8], "hidden": 16})
    out = hard(x)
    assert isinstance(hard, HardSharing)
    assert {k: tuple(v.shape) for k, v in out.items()} == {"left": (2, 10), "parity": (2, 2)}
    soft = create_model("soft_sharing", tasks={"left": 10, "parity": 2},
                        column_kwargs={"channels": [4, 8], "hidden": 16})
    assert {k: tuple(v.shape) for k, v in soft(x).items()} == {"left": (2, 10), "parity": (2, 2)}
    for trunk in ("mobilenet_v2", "resnet20"):
        model = create_model("hard_sharing", tasks={"a": 3, "b": 5}, trunk=trunk, in_channels=3,
                             image_size=32, trunk_kwargs={"width_mult": 0.25})
        shapes = {k: tuple(v.shape) for k, v in model(torch.randn(2, 3, 32, 32)).items()}
        assert shapes == {"a": (2, 3), "b": (2, 5)}


def test_bad_input_gives_one_line_errors():
    with pytest.raises(LeannetError, match="differ in shape"):
        SoftSharing({"a": nn.Linear(2, 3), "b": nn.Linear(2, 4)})
    with pytest.raises(LeannetError, match="different parameters"):
        SoftSharing({"a": nn.Linear(2, 3), "b": nn.Linear(2, 3, bias=False)})
    with pytest.raises(LeannetError, match="unknown soft-sharing penalty 'l1'"):
        SoftSharing({"a": nn.Linear(2, 3), "b": nn.Linear(2, 3)}, penalty="l1")
    with pytest.raises(LeannetError, match="strength must be a number >= 0"):
        SoftSharing({"a": nn.Linear(2, 3), "b": nn.Linear(2, 3)}, strength=-0.1)
    with pytest.raises(LeannetError, match="invalid"):
        HardSharing(nn.Identity(), {"a.b": nn.Linear(2, 2)})
    with pytest.raises(LeannetError, match="positive number of classes"):
        create_model("hard_sharing", tasks={"left": 0})
    with pytest.raises(LeannetError, match="unknown trunk"):
        create_model("hard_sharing", tasks={"left": 2}, trunk="nope")


def test_save_load_round_trip(tmp_path):
    x = torch.randn(3, 1, 28, 28)
    for name, kwargs in (("hard_sharing", {"trunk_kwargs": {"channels": [4, 8], "hidden": 16}}),
                         ("soft_sharing", {"column_kwargs": {"channels": [4, 8], "hidden": 16},
                                           "penalty": "trace", "strength": 0.01})):
        model = create_model(name, tasks={"left": 10, "right": 10}, head_hidden=8, **kwargs).eval()
        leannet.save(model, tmp_path / name)
        loaded = leannet.load(tmp_path / name)
        before, after = model(x), loaded(x)
        assert all(torch.equal(before[t], after[t]) for t in before)
    assert loaded.penalty_name == "trace" and loaded.strength == 0.01
