"""A deployed file scored with the model's own task metric: the runtime session is wrapped as an
nn.Module with the model's output structure, so `leannet.train.fit.evaluate` runs it unchanged
(classifiers, detectors and multi-task models alike)."""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from leannet.deploy.runtimes.base import Session
from leannet.errors import LeannetError
from leannet.export import flatten_outputs
from leannet.train.fit import evaluate


class SessionModule(nn.Module):
    """A runtime session behind nn.Module's call, with the model's output structure (a tensor or
    a dict of tensors), so leannet's evaluation code scores deployed files unchanged."""

    def __init__(self, session: Session, names: list[str], as_dict: bool) -> None:
        super().__init__()
        self.session, self.names, self.as_dict = session, names, as_dict

    def forward(self, inputs: torch.Tensor) -> Any:
        outs = [torch.from_numpy(np.asarray(o)) for o in self.session.run(inputs.cpu().numpy())]
        return dict(zip(self.names, outs)) if self.as_dict else outs[0]


def evaluate_session(session: Session, model: nn.Module, loader: Iterable, task: Any
                     ) -> dict[str, float]:
    """The task's metrics of the deployed file over `loader` (`model` gives output names)."""
    inputs, _ = next(iter(loader))
    with torch.no_grad():
        output = model.eval()(inputs[:1])
    if not isinstance(output, (torch.Tensor, dict)) or (
            isinstance(output, dict) and not all(isinstance(v, torch.Tensor)
                                                 for v in output.values())):
        raise LeannetError("scoring a deployed file needs a model that returns a tensor or a "
                           "dict of tensors")
    names = [name for name, _ in flatten_outputs(output)]
    return evaluate(SessionModule(session, names, isinstance(output, dict)), loader, task,
                    device="cpu")
