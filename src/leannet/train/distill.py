"""Knowledge distillation as a Task wrapper: the task's loss plus a term that pulls the student's
outputs (and, optionally, chosen features) towards a frozen teacher's on the same batch.

While pruning, the teacher is the unpruned model and the student the pruned one being fine-tuned
(`leannet prune --distill`). Because it is a Task, `fit` needs no change: a pre-forward hook on
the student runs the teacher on each training batch, and the loss mixes

    (1 - alpha) * task loss + alpha * output term + feature_weight * feature term

where the output term is, per output head, KL divergence of temperature-softened class
probabilities (times T^2, Hinton et al. 2015) for logits (N, K) and mean squared error for
anything else (a detector's raw prediction maps); the feature term is the mean squared error
between a learnt 1x1 projection of a student layer's output and the teacher's same layer
(FitNets), for the layers named. Evaluation (model.eval()) never runs the teacher.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import copy

import torch
import torch.nn.functional as F
from torch import nn

from leannet import checks
from leannet._torch import eval_mode
from leannet.errors import LeannetError


@dataclass(frozen=True)
class DistillConfig:
    """The loss mix: `alpha` on the output term (1 - alpha on the task loss), the softening
    `temperature`, and the layers (module names) whose features are matched, with their weight."""

    alpha: float = 0.5
    temperature: float = 4.0
    features: tuple[str, ...] = ()
    feature_weight: float = 1.0

    def check(self) -> "DistillConfig":
        """One clear line for a bad setting (NaN included)."""
        checks.number("--distill-alpha", self.alpha, low=0, high=1)
        checks.number("--distill-temperature", self.temperature, low=0, low_open=True, high=100)
        checks.number("--distill-feature-weight", self.feature_weight, low=0, high=1e6)
        return self


def output_term(student: Any, teacher: Any, temperature: float) -> torch.Tensor:
    """Per-head distillation of outputs: KL at `temperature` for logits (N, K), MSE otherwise;
    dicts and lists are matched key by key and averaged over heads."""
    if isinstance(student, dict):
        terms = [output_term(student[k], teacher[k], temperature) for k in student]
        return torch.stack(terms).mean()
    if isinstance(student, (list, tuple)):
        return torch.stack([output_term(s, t, temperature)
                            for s, t in zip(student, teacher)]).mean()
    if student.ndim == 2:
        t = temperature
        return F.kl_div(F.log_softmax(student.float() / t, dim=1),
                        F.log_softmax(teacher.float() / t, dim=1),
                        reduction="batchmean", log_target=True) * t * t
    return F.mse_loss(student.float(), teacher.float())


def _module(model: nn.Module, name: str, what: str) -> nn.Module:
    """A named submodule, or one line listing where to look."""
    modules = dict(model.named_modules())
    if name not in modules:
        raise LeannetError(f"--distill-features: the {what} has no layer {name!r} (layer names "
                           "are module names, e.g. layer2 or features.6)")
    return modules[name]


def _adapter(student: torch.Tensor, teacher: torch.Tensor) -> nn.Module:
    """A 1x1 projection from the student's channels to the teacher's (identity when equal)."""
    if student.ndim != teacher.ndim or student.shape[2:] != teacher.shape[2:]:
        raise LeannetError(f"--distill-features: student and teacher features differ in shape "
                           f"({tuple(student.shape)} vs {tuple(teacher.shape)})")
    cin, cout = student.shape[1], teacher.shape[1]
    layer: nn.Conv2d | nn.Linear = nn.Conv2d(cin, cout, 1, bias=False) if student.ndim == 4 \
        else nn.Linear(cin, cout, bias=False)
    if cin == cout:
        with torch.no_grad():
            layer.weight.view(cout, cin).copy_(torch.eye(cout))
    return layer


class DistillationTask(nn.Module):
    """`task` with a distillation term from `teacher` (frozen, kept in eval mode); the feature
    adapters are this task's parameters, so `fit` trains them with the student."""

    def __init__(self, task: Any, teacher: nn.Module, student: nn.Module,
                 example_inputs: torch.Tensor, config: DistillConfig = DistillConfig()) -> None:
        super().__init__()
        self.config = config.check()
        self.base = task  # an nn.Module task (uncertainty weights) stays a submodule: it learns
        self.teacher = teacher
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.main_metric = task.main_metric
        self._teacher_out: Any = None
        self._student_feats: dict[str, torch.Tensor] = {}
        self._teacher_feats: dict[str, torch.Tensor] = {}
        self._hooks: list[Any] = []
        for name in config.features:
            self._hooks.append(_module(student, name, "student").register_forward_hook(
                self._keep(self._student_feats, name)))
            self._hooks.append(_module(teacher, name, "teacher").register_forward_hook(
                self._keep(self._teacher_feats, name)))
        self.adapters = nn.ModuleDict()
        if config.features:
            with torch.no_grad(), eval_mode(student), eval_mode(teacher):
                student(example_inputs)
                teacher(example_inputs.to(next(teacher.parameters()).device))
            for name in config.features:
                self.adapters[name.replace(".", "_")] = _adapter(
                    self._student_feats[name], self._teacher_feats[name])
        self._hooks.append(student.register_forward_pre_hook(self._run_teacher))

    @staticmethod
    def _keep(store: dict[str, torch.Tensor], name: str) -> Any:
        def hook(module: nn.Module, args: Any, output: torch.Tensor) -> None:
            store[name] = output
        return hook

    def _run_teacher(self, student: nn.Module, args: tuple) -> None:
        """Before each training forward of the student: the teacher's view of the same batch."""
        self._teacher_out = None
        if student.training:
            with torch.no_grad():
                self._teacher_out = self.teacher(*args)

    def train(self, mode: bool = True) -> "DistillationTask":
        """The teacher stays in eval mode (its BatchNorm statistics are fixed)."""
        super().train(mode)
        self.teacher.eval()
        return self

    def loss(self, outputs: Any, targets: Any) -> torch.Tensor:
        """(1 - alpha) task loss + alpha output term + feature_weight feature term."""
        loss = self.base.loss(outputs, targets)
        if self._teacher_out is None:  # evaluation, or a forward this task did not see
            return loss
        cfg = self.config
        loss = (1 - cfg.alpha) * loss + cfg.alpha * output_term(outputs, self._teacher_out,
                                                                 cfg.temperature)
        if cfg.features and cfg.feature_weight:
            terms = [F.mse_loss(self.adapters[name.replace(".", "_")](
                self._student_feats[name]).float(), self._teacher_feats[name].float())
                for name in cfg.features]
            loss = loss + cfg.feature_weight * torch.stack(terms).mean()
        self._teacher_out = None
        return loss

    def meter(self) -> Any:
        """The wrapped task's meter: distillation changes training, not scoring."""
        return self.base.meter()

    def on_epoch_end(self, history: list[dict[str, float]]) -> None:
        """Pass the epoch on to a task that adapts (dynamic weight averaging)."""
        if hasattr(self.base, "on_epoch_end"):
            self.base.on_epoch_end(history)

    def detach(self) -> None:
        """Remove the hooks from the student and teacher."""
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()


@contextmanager
def distilling(student: nn.Module, teacher: nn.Module, task: Any, example_inputs: torch.Tensor,
               config: DistillConfig = DistillConfig()) -> Iterator[DistillationTask]:
    """Inside: a Task that trains `student` on `task` distilled from `teacher`; hooks are
    removed on exit. Use it in a fine-tune callable of `iterative_prune`:

        teacher = copy.deepcopy(model).eval()
        def finetune(m):
            with distilling(m, teacher, task, example) as distilled:
                fit(m, train_loader, val_loader, distilled, epochs=1)
    """
    distilled = DistillationTask(task, teacher, student, example_inputs, config)
    try:
        yield distilled
    finally:
        distilled.detach()


def frozen_teacher(model: nn.Module) -> nn.Module:
    """A frozen copy of `model` in eval mode: the unpruned teacher of a prune run."""
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher
