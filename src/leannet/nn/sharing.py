"""Hard and soft parameter sharing across tasks (Ruder 2017's two families of deep multi-task nets).

Hard sharing: one trunk for every task, one head per task. Soft sharing: one column (model) per
task, their parameters pulled together by a penalty: the squared L2 distance (Duong et al. 2015)
or the trace (nuclear) norm of the matrix stacking each layer's parameters (Yang & Hospedales 2017).
"""
from __future__ import annotations

import math
from itertools import combinations
from typing import Any, Iterable, Iterator

import torch
from torch import Tensor, nn

from leannet.errors import LeannetError

PENALTIES = ("l2", "trace")


def check_task_names(names: Iterable[str], what: str) -> list[str]:
    """Task names must be non-empty strings usable as module names (no '.')."""
    names = list(names)
    if not names:
        raise LeannetError(f"{what} needs at least one task")
    for name in names:
        if not isinstance(name, str) or not name or "." in name or "/" in name:
            raise LeannetError(f"task name {name!r} in {what} is invalid; expected a non-empty "
                               "name without '.' or '/'")
    return names


class HardSharing(nn.Module):
    """A trunk shared by every task and one head per task; `forward` returns {task: output}."""

    def __init__(self, trunk: nn.Module, heads: dict[str, nn.Module]) -> None:
        super().__init__()
        check_task_names(heads, "HardSharing heads")
        self.trunk = trunk
        self.heads = nn.ModuleDict(heads)

    @property
    def task_names(self) -> list[str]:
        """The tasks, in head order."""
        return list(self.heads)

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        """The trunk's parameters, which every task's loss reaches."""
        return self.trunk.parameters()

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        features = self.trunk(x)
        return {name: head(features) for name, head in self.heads.items()}


class SoftSharing(nn.Module):
    """One column per task, same architecture; `penalty()` pulls corresponding parameters together.

    Parameters whose name starts with a prefix in `exclude` (e.g. "head.", the task-specific output
    layers) are left out of the penalty. `auxiliary_loss()` = strength * penalty(), which the fit
    loop adds to the task loss.
    """

    def __init__(self, columns: dict[str, nn.Module], penalty: str = "l2",
                 strength: float = 1e-3, exclude: Iterable[str] = ()) -> None:
        super().__init__()
        check_task_names(columns, "SoftSharing columns")
        if penalty not in PENALTIES:
            raise LeannetError(f"unknown soft-sharing penalty {penalty!r}; expected 'l2' or 'trace'")
        if not isinstance(strength, (int, float)) or not math.isfinite(strength) or strength < 0:
            raise LeannetError(f"soft-sharing strength must be a number >= 0, got {strength!r}")
        self.columns = nn.ModuleDict(columns)
        self.penalty_name = penalty
        self.strength = float(strength)
        self.exclude = tuple(exclude)
        self.shared_parameter_names()  # fail early on columns whose shapes differ

    @property
    def task_names(self) -> list[str]:
        """The tasks, in column order."""
        return list(self.columns)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        outputs = {}
        for name, column in self.columns.items():
            out = column(x)
            outputs[name] = out[name] if isinstance(out, dict) else out
        return outputs

    def shared_parameter_names(self) -> list[str]:
        """Names (within a column) of the penalised parameters; all columns must agree on shapes."""
        columns = list(self.columns.items())
        first_name, first = columns[0]
        reference = {k: p.shape for k, p in first.named_parameters()
                     if not k.startswith(self.exclude)}
        for name, column in columns[1:]:
            shapes = {k: p.shape for k, p in column.named_parameters()
                      if not k.startswith(self.exclude)}
            if shapes.keys() != reference.keys():
                extra = sorted(set(shapes) ^ set(reference))[:3]
                raise LeannetError(f"soft-sharing columns {first_name!r} and {name!r} have "
                                   f"different parameters ({', '.join(extra)}); columns must share "
                                   "one architecture")
            for key, shape in reference.items():
                if shapes[key] != shape:
                    raise LeannetError(
                        f"soft-sharing columns differ in shape at {key}: {first_name!r} has "
                        f"{tuple(shape)}, {name!r} has {tuple(shapes[key])}; columns must share "
                        "one architecture")
        return list(reference)

    def stacked_parameters(self) -> dict[str, Tensor]:
        """Each penalised parameter as a (tasks, numel) matrix, one flattened row per task."""
        names = self.shared_parameter_names()
        params = [dict(column.named_parameters()) for column in self.columns.values()]
        return {k: torch.stack([p[k].reshape(-1) for p in params]) for k in names}

    def penalty(self) -> Tensor:
        """The soft-sharing penalty summed over corresponding parameters (see `l2_penalty`)."""
        fn = l2_penalty if self.penalty_name == "l2" else trace_norm_penalty
        return fn(self.stacked_parameters().values())

    def auxiliary_loss(self) -> Tensor:
        """strength * penalty(); zero (without computing the penalty) when strength is 0."""
        if self.strength == 0:
            return next(self.parameters()).new_zeros(())
        return self.strength * self.penalty()


def l2_penalty(stacks: Iterable[Tensor]) -> Tensor:
    """Sum over layers and over task pairs i < j of ||theta_i - theta_j||^2."""
    total: Tensor | Any = 0.0
    for stack in stacks:
        for i, j in combinations(range(stack.shape[0]), 2):
            total = total + (stack[i] - stack[j]).pow(2).sum()
    return torch.as_tensor(total)


def trace_norm_penalty(stacks: Iterable[Tensor]) -> Tensor:
    """Sum over layers of the nuclear norm (sum of singular values) of the (tasks, numel) stack."""
    total: Tensor | Any = 0.0
    for stack in stacks:
        total = total + NuclearNorm.apply(stack)
    return torch.as_tensor(total)


class NuclearNorm(torch.autograd.Function):
    """||M||_* with the subgradient U_r V_r^T over the nonzero singular values.

    torch's SVD backward divides by differences of singular values, which are zero when the task
    rows are equal (every column initialised alike): NaN. The nuclear norm's gradient needs only the
    singular vectors of the nonzero singular values; zero singular values contribute 0 (a valid
    subgradient), so this is exact where the norm is differentiable and finite everywhere.
    """

    @staticmethod
    def forward(ctx: Any, matrix: Tensor) -> Tensor:
        work = matrix.detach().double()
        u, s, vh = torch.linalg.svd(work, full_matrices=False)
        keep = s > s.max().clamp_min(1e-30) * max(work.shape) * torch.finfo(torch.float64).eps
        ctx.save_for_backward((u[:, keep] @ vh[keep]).to(matrix.dtype))
        return s.sum().to(matrix.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (direction,) = ctx.saved_tensors
        return grad * direction
