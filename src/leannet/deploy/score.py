"""A deployed file scored with the model's own task metric: the runtime session is wrapped as an
nn.Module with the model's output structure, so `leannet.train.fit.evaluate` runs it unchanged
(classifiers, detectors and multi-task models alike).

For detectors, `detection_agreement` also scores a deployed file against the torch model itself:
mAP@0.5 of the file's detections with the fp32 model's detections as ground truth, on the
same real inputs. It says what int8 changed whatever the model's own accuracy (an undertrained
detector's mAP is near 0 in both precisions, which hides any difference)."""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from leannet.deploy.runtimes.base import Session
from leannet.detect.decode import decode
from leannet.detect.metrics import mean_average_precision
from leannet.errors import LeannetError
from leannet.export import flatten_outputs
from leannet.train.fit import evaluate

AGREEMENT_CONF = 0.001  # detections kept for the file-against-torch comparison


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


def detection_agreement(session: Session, model: nn.Module, inputs: torch.Tensor, task: Any
                        ) -> float | None:
    """mAP@0.5 of the deployed file's detections on `inputs`, with the torch model's own
    detections as the ground truth (both decoded and NMS'd with the task's IoU threshold, at
    confidence AGREEMENT_CONF, COCO's usual floor, so even a barely trained detector has boxes
    to compare); 1.0 is the same boxes, classes and ranking. None for a model that is not a
    detector, or when the torch model detects nothing on `inputs`."""
    spec = getattr(task, "spec", None)
    if spec is None or not hasattr(task, "iou_threshold"):
        return None
    with torch.no_grad():
        output = model.eval()(inputs)
    if not isinstance(output, dict):
        return None
    names = [name for name, _ in flatten_outputs(output)]
    with torch.no_grad():
        reference = decode(output, spec, AGREEMENT_CONF, task.iou_threshold)
        deployed = SessionModule(session, names, True)  # one image at a time: files of a
        got = [d for i in range(len(inputs))  # fixed batch (ExecuTorch) take batch 1
               for d in decode(deployed(inputs[i:i + 1]), spec, AGREEMENT_CONF,
                               task.iou_threshold)]
    if not any(len(r["boxes"]) for r in reference):
        return None
    targets = [{"boxes": r["boxes"], "labels": r["labels"]} for r in reference]
    return mean_average_precision(got, targets, spec.num_classes)["map50"]
