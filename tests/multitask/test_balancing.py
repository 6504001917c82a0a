"""Each loss-balancing method on the case that defines it: PCGrad removes conflicts, CAGrad
raises the worst task's improvement, IMTL-G gives equal projections, Aligned-MTL makes the task
gradients orthogonal with equal norms, Nash-MTL finds the bargaining solution (alpha_t <g_t, d>
equal for every task, invariant to a task's scale), GradNorm evens the weighted gradient norms; and the fit
loop runs a gradient method through the task's own backward pass."""
import pytest
import torch
from torch import nn

from leannet.errors import LeannetError
from leannet.multitask import gradients
from leannet.multitask.tasks import MultiTask
from leannet.multitask.weighting import GradNorm, GradientWeighting, make_weighting
from leannet.nn.sharing import HardSharing
from leannet.train.fit import fit


def _cos(a, b):
    return float(a @ b / (a.norm() * b.norm()))


CONFLICT = torch.tensor([[1.0, 0.0, 0.5], [-0.8, 1.0, 0.0], [0.1, -1.0, 1.0]], dtype=torch.float64)


def test_pcgrad_projects_away_conflicts_and_leaves_agreement_alone():
    two = CONFLICT[:2]
    assert _cos(two[0], two[1]) < 0
    projected = gradients.pcgrad_project(two, torch.Generator().manual_seed(0))
    assert projected[0] @ two[1] == pytest.approx(0, abs=1e-12)  # conflict removed, not reversed
    assert projected[1] @ two[0] == pytest.approx(0, abs=1e-12)
    assert _cos(projected[0], two[1]) >= -1e-12 and _cos(projected[1], two[0]) >= -1e-12
    agree = torch.tensor([[1.0, 0.2], [0.5, 1.0]], dtype=torch.float64)
    assert torch.equal(gradients.pcgrad_project(agree), agree)
    assert torch.allclose(gradients.pcgrad(agree), agree.sum(0))


def test_cagrad_raises_the_worst_tasks_improvement_within_its_ball():
    g = CONFLICT
    g0 = g.mean(0)
    d = gradients.cagrad(g, c=0.5, rescale=False) / len(g)
    assert (d - g0).norm() <= 0.5 * g0.norm() + 1e-6  # stays in the ball around the mean
    assert (g @ d).min() > (g @ g0).min() + 1e-3  # the worst task does better than under the mean
    assert torch.allclose(gradients.cagrad(g, c=0.0), g.sum(0))  # c = 0: the plain sum


def test_imtl_projects_equally_on_every_task():
    g = CONFLICT
    weights = gradients.imtl_weights(g)
    assert float(weights.sum()) == pytest.approx(1.0)
    d = weights @ g
    projections = (g / g.norm(dim=1, keepdim=True)) @ d
    assert torch.allclose(projections, projections[0].expand(3), atol=1e-9)


def test_aligned_mtl_makes_gradients_orthogonal_with_equal_norms():
    g = CONFLICT
    aligned = gradients.aligned_gradients(g)
    smallest = torch.linalg.eigvalsh(g @ g.T).min()
    assert torch.allclose(aligned @ aligned.T, smallest * torch.eye(3, dtype=g.dtype), atol=1e-9)
    assert torch.allclose(gradients.aligned_mtl(g), aligned.sum(0))


def test_nash_mtl_solves_the_bargaining_equation():
    g = CONFLICT
    alpha = gradients.nash_weights(g)
    gram = g @ g.T
    normed = gram / torch.linalg.matrix_norm(gram)
    assert (alpha > 0).all()
    assert torch.allclose(normed @ alpha, 1 / alpha, rtol=1e-6)  # G G^T alpha = 1 / alpha
    d = gradients.nash_mtl(g)
    assert torch.allclose(d, alpha @ g)
    shares = alpha * (g @ d)  # each task's share of the improvement: equal at the solution
    assert torch.allclose(shares, shares[0].expand(3), rtol=1e-6)
    assert (g @ d).min() > 0  # every task's loss falls along d, though the gradients conflict
    assert (g @ g.sum(0)).min() < 0  # the plain sum raises one task's loss here


def test_nash_mtl_ignores_a_tasks_scale():
    orthogonal = torch.tensor([[1.0, 0.0], [0.0, 10.0]], dtype=torch.float64)
    d = gradients.nash_mtl(orthogonal)
    unit = orthogonal / orthogonal.norm(dim=1, keepdim=True)
    assert float(unit[0] @ d) == pytest.approx(float(unit[1] @ d), rel=1e-6)  # the sum: 1 vs 10
    rescaled = CONFLICT * torch.tensor([[1.0], [10.0], [0.1]], dtype=torch.float64)
    a, b = gradients.nash_mtl(CONFLICT), gradients.nash_mtl(rescaled)
    assert _cos(a, b) == pytest.approx(1.0, abs=1e-6)  # same direction whatever the loss scales
    assert torch.allclose(gradients.nash_weights(rescaled) * torch.tensor([1.0, 10.0, 0.1],
                                                                           dtype=torch.float64),
                          gradients.nash_weights(CONFLICT) * b.norm() / a.norm(), rtol=1e-5)
    zero = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)  # a task already solved
    assert torch.isfinite(gradients.nash_weights(zero)).all()
    assert torch.allclose(gradients.nash_mtl(zero), torch.tensor([1.0, 0.0], dtype=torch.float64),
                          atol=1e-6)
    with pytest.raises(LeannetError, match="not finite"):
        gradients.nash_weights(torch.tensor([[float("nan"), 1.0], [0.0, 1.0]]))


def _toy(scale: float = 10.0):
    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Linear(4, 8), nn.Tanh())
    model = HardSharing(trunk, {"a": nn.Linear(8, 1), "b": nn.Linear(8, 1)})
    x = torch.randn(64, 4)
    targets = {"a": x[:, :1].clone(), "b": scale * x[:, 1:2].clone()}
    return model, x, targets


def _losses(model, x, targets):
    out = model(x)
    return {t: (out[t] - targets[t]).pow(2).mean() for t in ("a", "b")}


def test_gradnorm_evens_the_weighted_gradient_norms():
    model, x, targets = _toy(scale=10.0)
    weighting = GradNorm(["a", "b"], alpha=0.0)  # alpha 0: equal norms is the target
    opt = torch.optim.SGD([weighting.task_weights], lr=0.05)
    last = model.trunk[0].weight

    def norms():
        losses = _losses(model, x, targets)
        w = weighting.task_weights.detach()
        return [float(torch.autograd.grad(w[i] * losses[t], last, retain_graph=True)[0].norm())
                for i, t in enumerate(("a", "b"))]

    before = norms()
    for _ in range(40):
        losses = _losses(model, x, targets)
        loss = weighting(losses)
        model.zero_grad()
        weighting.backward(losses, loss, model.shared_parameters())
        opt.step()
    after = norms()
    assert before[1] / before[0] > 5  # task b's gradient dominates at first
    assert after[1] / after[0] < 0.5 * before[1] / before[0]
    w = weighting.weights()
    assert w["b"] < w["a"] and sum(w.values()) == pytest.approx(2.0, abs=0.05)


def test_gradient_weighting_replaces_only_the_shared_gradient():
    model, x, targets = _toy()
    weighting = GradientWeighting(["a", "b"], "imtl")
    losses = _losses(model, x, targets)
    model.zero_grad()
    weighting.backward(losses, weighting(losses), list(model.shared_parameters()))
    head_grad = torch.autograd.grad(_losses(model, x, targets)["a"], model.heads["a"].weight)[0]
    assert torch.allclose(model.heads["a"].weight.grad, head_grad, atol=1e-6)  # heads: own loss
    shared = torch.cat([p.grad.reshape(-1) for p in model.shared_parameters()])
    expected = gradients.imtl(weighting.last_grads.double()).float()
    assert torch.allclose(shared, expected, atol=1e-5)


@pytest.mark.parametrize("name", ["pcgrad", "cagrad", "imtl", "aligned", "nash", "gradnorm"])
def test_fit_trains_through_the_tasks_backward(name):
    model, x, targets = _toy(scale=3.0)
    labels = {"a": (targets["a"] > 0).long().squeeze(1), "b": (targets["b"] > 0).long().squeeze(1)}
    model.heads["a"], model.heads["b"] = nn.Linear(8, 2), nn.Linear(8, 2)
    task = MultiTask(["a", "b"], name)
    loader = [(x[i:i + 16], {t: v[i:i + 16] for t, v in labels.items()}) for i in range(0, 64, 16)]
    history = fit(model, loader, loader, task, 3, lr=0.1, progress=False)
    assert history[-1]["mean_accuracy"] > 0.75
    if name != "gradnorm":
        assert task.weighting.last_grads.shape[0] == 2  # it saw one gradient per task


def test_unknown_or_misplaced_weighting_is_one_line():
    with pytest.raises(LeannetError, match="unknown loss weighting 'famo'"):
        make_weighting("famo", ["a", "b"])
    task = MultiTask(["a", "b"], "pcgrad")
    columns = nn.Linear(2, 2)
    outputs = {"a": columns(torch.randn(4, 2)), "b": columns(torch.randn(4, 2))}
    loss = task.loss(outputs, {"a": torch.zeros(4).long(), "b": torch.ones(4).long()})
    with pytest.raises(LeannetError, match="needs a model with shared parameters"):
        task.backward(loss, columns)
