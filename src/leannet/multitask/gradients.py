"""Gradient balancing across tasks: combine per-task gradients of the shared parameters.

Each function takes G, a (tasks, parameters) matrix whose row t is task t's gradient of the
shared parameters, and returns the direction d the optimiser should follow (plain sum: G.sum(0)).

- PCGrad (Yu et al. 2020): project each gradient onto the normal plane of every other task's
  gradient it conflicts with (negative dot product), in random order; sum.
- CAGrad (Liu et al. 2021): the d within a ball of radius c * ||g0|| around the mean gradient g0
  that maximises the worst task's improvement min_t <g_t, d> (solved in the dual over the
  simplex); rescaled by 1 / (1 + c^2) as the authors' default.
- IMTL-G (Liu et al. 2021): the combination sum_t a_t g_t (sum_t a_t = 1) whose projection onto
  every task's unit gradient is equal (closed form).
- Aligned-MTL (Senushkin et al. 2023): replace G by the nearest rows with equal norms that are
  orthogonal (the condition number of G G^T becomes 1), scaled by the smallest singular value;
  sum with equal weights.
- Nash-MTL (Navon et al. 2022): the direction d = sum_t alpha_t g_t of the Nash bargaining
  solution, where alpha > 0 solves G G^T alpha = 1 / alpha, i.e. alpha_t <g_t, d> = 1 for every
  task: no task's share of the improvement can grow without another's shrinking, and the
  direction does not change when one task's loss is rescaled. G G^T is divided by its Frobenius
  norm first, as the authors do. Solved by damped Newton steps on the strictly convex
  0.5 alpha^T M alpha - sum log alpha (its gradient is zero exactly at the equation), not cvxpy.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from leannet.errors import LeannetError


def _check(grads: Tensor) -> Tensor:
    if grads.ndim != 2 or grads.shape[0] < 1:
        raise LeannetError(f"task gradients must be a (tasks, parameters) matrix, got "
                           f"{tuple(grads.shape)}")
    return grads.double()


def pcgrad_project(grads: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """PCGrad's projected task gradients (tasks, parameters), same dtype as `grads`."""
    g = _check(grads)
    projected = g.clone()
    tasks = g.shape[0]
    for i in range(tasks):
        for j in torch.randperm(tasks, generator=generator).tolist():
            if j == i:
                continue
            dot = projected[i] @ g[j]
            if dot < 0:
                projected[i] -= dot / g[j].pow(2).sum().clamp_min(1e-20) * g[j]
    return projected.to(grads.dtype)


def pcgrad(grads: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """The PCGrad direction: the sum of the projected task gradients."""
    return pcgrad_project(grads, generator).sum(0)


def cagrad(grads: Tensor, c: float = 0.4, steps: int = 100, rescale: bool = True) -> Tensor:
    """The CAGrad direction (times the number of tasks, to match the sum's scale)."""
    g = _check(grads)
    tasks = g.shape[0]
    g0 = g.mean(0)
    if c <= 0 or tasks == 1:
        return (g0 * tasks).to(grads.dtype)
    gram = g @ g.T
    g0_norm = (gram.mean() + 1e-20).sqrt()  # ||g0||^2 = mean of G G^T
    phi = (c * g0_norm) ** 2
    logits = torch.zeros(tasks, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.1)
    gram0 = gram.mean(1)  # G g0
    for _ in range(steps):  # dual: min_w  g_w . g0 + sqrt(phi) ||g_w||, w on the simplex
        w = torch.softmax(logits, 0)
        objective = w @ gram0 + phi.sqrt() * (w @ gram @ w + 1e-20).sqrt()
        opt.zero_grad()
        objective.backward()
        opt.step()
    w = torch.softmax(logits.detach(), 0)
    gw = w @ g
    d = g0 + phi.sqrt() / (gw.norm() + 1e-20) * gw
    if rescale:
        d = d / (1 + c ** 2)
    return (d * tasks).to(grads.dtype)


def imtl_weights(grads: Tensor) -> Tensor:
    """IMTL-G's weights a (summing to 1) such that d = a G has equal projections on each u_t."""
    g = _check(grads)
    if g.shape[0] == 1:
        return torch.ones(1, dtype=grads.dtype)
    u = g / g.norm(dim=1, keepdim=True).clamp_min(1e-20)
    d_mat = g[:1] - g[1:]
    u_mat = u[:1] - u[1:]
    rest = g[0] @ u_mat.T @ torch.linalg.pinv(d_mat @ u_mat.T)
    return torch.cat([1 - rest.sum(0, keepdim=True), rest]).to(grads.dtype)


def imtl(grads: Tensor) -> Tensor:
    """The IMTL-G direction (times the number of tasks, to match the sum's scale)."""
    return grads.shape[0] * (imtl_weights(grads) @ grads)


def aligned_gradients(grads: Tensor) -> Tensor:
    """Aligned-MTL's task gradients: orthogonal rows of equal norm sqrt(lambda_min)."""
    g = _check(grads)
    values, vectors = torch.linalg.eigh(g @ g.T)
    keep = values > values.max().clamp_min(1e-30) * 1e-10
    if not keep.any():
        return torch.zeros_like(grads)
    values, vectors = values[keep], vectors[:, keep]
    balance = values.min().sqrt() * vectors @ torch.diag(values.rsqrt()) @ vectors.T
    return (balance @ g).to(grads.dtype)


def aligned_mtl(grads: Tensor) -> Tensor:
    """The Aligned-MTL direction: the sum of the aligned task gradients."""
    return aligned_gradients(grads).sum(0)


def nash_weights(grads: Tensor, steps: int = 50, tolerance: float = 1e-10) -> Tensor:
    """Nash-MTL's alpha (> 0) with M alpha = 1 / alpha, M = G G^T / ||G G^T||_F.

    Newton on f(alpha) = 0.5 alpha^T M alpha - sum_t log alpha_t, whose Hessian M + diag(1 /
    alpha^2) is positive definite, with a step halved until alpha stays positive and f falls.
    A task whose gradient is zero (or lies in no direction the others leave) would need an
    infinite weight, so M gets a ridge of 1e-12 of its scale: such a task gets a large, finite one.
    """
    g = _check(grads)
    tasks = g.shape[0]
    gram = g @ g.T
    scale = torch.linalg.matrix_norm(gram)
    if not torch.isfinite(scale):
        raise LeannetError("Nash-MTL got a task gradient that is not finite")
    if scale <= 0:
        return torch.ones(tasks, dtype=grads.dtype)
    m = gram / scale + 1e-12 * torch.eye(tasks, dtype=g.dtype)
    alpha = torch.ones(tasks, dtype=g.dtype) / m.diagonal().sqrt()  # exact for orthogonal rows

    def objective(a: Tensor) -> Tensor:
        return 0.5 * a @ m @ a - a.log().sum()

    for _ in range(steps):
        residual = m @ alpha - 1 / alpha
        if residual.abs().max() <= tolerance * (1 / alpha).abs().max():
            break
        hessian = m + torch.diag(alpha.pow(-2))
        step = torch.linalg.solve(hessian, residual)
        size, before = 1.0, objective(alpha)
        while size > 1e-12:
            trial = alpha - size * step
            if bool((trial > 0).all()) and objective(trial) <= before:
                alpha = trial
                break
            size /= 2
        else:
            break
    return alpha.to(grads.dtype)


def nash_mtl(grads: Tensor) -> Tensor:
    """The Nash-MTL direction sum_t alpha_t g_t (its norm is sqrt(tasks * ||G G^T||_F))."""
    return nash_weights(grads) @ grads


METHODS: dict[str, Callable[..., Tensor]] = {"pcgrad": pcgrad, "cagrad": cagrad, "imtl": imtl,
                                             "aligned": aligned_mtl, "nash": nash_mtl}
