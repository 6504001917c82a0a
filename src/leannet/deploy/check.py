"""Is the deployed file the same model? fp32 must match torch to float tolerance (parity); int8
is compared on real inputs by top-1 agreement and relative output difference (scoring with the
task's metric is in `leannet.deploy.score`)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from leannet.errors import LeannetError
from leannet.export import flatten_outputs

PARITY_RTOL = {"torch": 1e-5, "onnxruntime": 1e-4, "executorch": 1e-3}  # XNNPACK reorders sums


def reference_outputs(model: nn.Module, inputs: torch.Tensor) -> list[np.ndarray]:
    """The model's flat outputs on `inputs`, in eval mode without gradients."""
    with torch.no_grad():
        return [t.detach().cpu().numpy() for _, t in flatten_outputs(model(inputs))]


def compare(expected: list[np.ndarray], got: list[np.ndarray]) -> dict[str, Any]:
    """max_abs_diff, max_rel_diff (over the largest |expected|, per output) and, for 2-D
    outputs (logits), top1_agreement: the fraction of rows whose argmax is the same."""
    if len(expected) != len(got):
        raise LeannetError(f"the runtime returned {len(got)} outputs; the model has {len(expected)}")
    max_abs = max_rel = 0.0
    agree: list[float] = []
    for ref, out in zip(expected, got):
        if ref.shape != out.shape:
            raise LeannetError(f"runtime output shape {list(out.shape)} differs from the model's "
                               f"{list(ref.shape)}")
        diff = float(np.max(np.abs(out - ref))) if ref.size else 0.0
        max_abs = max(max_abs, diff)
        max_rel = max(max_rel, diff / max(float(np.max(np.abs(ref))) if ref.size else 0.0, 1e-12))
        if ref.ndim == 2 and ref.shape[1] > 1:
            agree.append(float(np.mean(ref.argmax(1) == out.argmax(1))))
    return {"max_abs_diff": max_abs, "max_rel_diff": max_rel,
            "top1_agreement": float(np.mean(agree)) if agree else None}


def check_parity(runtime: str, expected: list[np.ndarray], got: list[np.ndarray]) -> dict:
    """`compare`, raising LeannetError when fp32 outputs differ beyond the runtime's tolerance."""
    result = compare(expected, got)
    rtol = PARITY_RTOL.get(runtime, 1e-4)
    if result["max_rel_diff"] > rtol:
        raise LeannetError(f"{runtime} parity failed: max relative difference "
                           f"{result['max_rel_diff']:.3g} is above {rtol:g}")
    return {**result, "rtol": rtol}
