"""int8 post-training quantization (and optional quantization-aware fine-tuning) through
PyTorch's PT2E flow: export the graph, insert observers chosen by a backend's quantizer,
calibrate on real batches, convert to quantize/dequantize form.

The quantizer is XNNPACK's (per-channel symmetric int8 weights, int8 activations with
histogram-free min/max observers), because XNNPACK is the CPU backend of ExecuTorch on phones;
the converted model runs in torch as a numerical reference of the int8 model and is what
ExecuTorch lowers. The quantizer ships with ExecuTorch (`leannet[deploy]`).

One addition: XNNPACK's quantizer fuses conv + ReLU but not conv + ReLU6 (hardtanh), so every
ReLU6 of a MobileNet got its own quantize/dequantize pair (102 quantize ops for 52 convs in
MobileNetV2) and XNNPACK ran each clamp separately; int8 MobileNetV2 then ran no faster than
fp32 in ExecuTorch (0.98x). `_annotate_conv_clamp` annotates conv -> hardtanh the way the
quantizer annotates conv -> relu (one output observer after the clamp), which XNNPACK's
partitioner then fuses into the int8 convolution.
"""
from __future__ import annotations

import copy
from typing import Callable, Iterable

import torch
from torch import nn

from leannet.errors import LeannetError
from leannet.export import fold_batchnorm

try:
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer, get_symmetric_quantization_config)
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer_utils import (
        _mark_nodes_as_annotated, get_bias_qspec, get_input_act_qspec, get_output_act_qspec,
        get_weight_qspec)
    from torchao.quantization.pt2e.quantizer.quantizer import (Q_ANNOTATION_KEY,
                                                               QuantizationAnnotation)
    from torchao.quantization.pt2e import allow_exported_model_train_eval
    from torchao.quantization.pt2e.quantize_pt2e import (convert_pt2e, prepare_pt2e,
                                                         prepare_qat_pt2e)
    _MISSING = None
except ImportError as err:
    _MISSING = (f"int8 quantization needs executorch and torchao ({err.name or err}); install "
                'them with: pip install "leannet[deploy]"')

MAX_CALIBRATION_BATCH = 1024


def check_available() -> None:
    """LeannetError with the install hint when the PT2E toolchain is missing."""
    if _MISSING:
        raise LeannetError(_MISSING)


def _capture(model: nn.Module, example: torch.Tensor, fold: bool) -> nn.Module:
    """The model as a PT2E graph module with a dynamic batch axis (calibration batches differ
    from the export batch)."""
    ready = fold_batchnorm(model) if fold else copy.deepcopy(model)
    batch = torch.export.Dim("batch", min=1, max=MAX_CALIBRATION_BATCH)
    sample = example.cpu()[:1].expand(2, *example.shape[1:]).contiguous()
    try:
        return torch.export.export(ready.eval(), (sample,), dynamic_shapes=({0: batch},)).module()
    except Exception as err:  # torch.export raises many types; the user needs one line
        raise LeannetError(f"cannot capture {type(model).__name__} for quantization: "
                           f"{type(err).__name__}: {err}".splitlines()[0]) from err


def quantize_ptq(model: nn.Module, example: torch.Tensor,
                 calibration: Iterable[torch.Tensor], per_channel: bool = True) -> nn.Module:
    """Post-training static int8 quantization calibrated on `calibration` batches of real
    inputs; returns the converted model (quantize/dequantize ops around fp32 ops)."""
    check_available()
    prepared = prepare_pt2e(_capture(model, example, fold=True), _quantizer(per_channel))
    seen = _calibrate(prepared, calibration)
    converted = convert_pt2e(prepared)
    allow_exported_model_train_eval(converted)  # so leannet's evaluate() can score it
    converted.leannet_calibration_batches = seen
    return converted


def quantize_qat(model: nn.Module, example: torch.Tensor, calibration: Iterable[torch.Tensor],
                 finetune: Callable[[nn.Module], None], per_channel: bool = True) -> nn.Module:
    """Quantization-aware fine-tuning: fake-quantize in training (BatchNorm kept, so it can
    still learn), run `finetune(model)` (e.g. a few epochs of leannet.train.fit), convert."""
    check_available()
    prepared = prepare_qat_pt2e(_capture(model, example, fold=False), _quantizer(per_channel,
                                                                                 qat=True))
    allow_exported_model_train_eval(prepared)  # fit switches train/eval modes
    _calibrate(prepared, calibration)  # sensible ranges before the first step
    finetune(prepared)
    prepared.eval()
    converted = convert_pt2e(prepared)
    allow_exported_model_train_eval(converted)
    return converted


CLAMPS = ("aten.hardtanh.default", "aten.hardtanh_.default")
FUSABLE = ("aten.conv2d.default", "aten.conv1d.default", "aten.linear.default")


def _annotate_conv_clamp(gm: torch.fx.GraphModule, config: object) -> int:
    """Annotate conv/linear -> hardtanh (ReLU6) as one quantized unit: inputs, weights and bias
    of the conv as XNNPACK's quantizer does for conv -> relu, the output observer after the
    clamp. Returns how many were annotated."""
    count = 0
    for clamp in gm.graph.nodes:
        if clamp.op != "call_function" or str(clamp.target) not in CLAMPS:
            continue
        conv = clamp.args[0]
        if (not isinstance(conv, torch.fx.Node) or conv.op != "call_function"
                or str(conv.target) not in FUSABLE or len(conv.users) != 1
                or Q_ANNOTATION_KEY in conv.meta or Q_ANNOTATION_KEY in clamp.meta):
            continue
        inputs = {conv.args[0]: get_input_act_qspec(config),
                  conv.args[1]: get_weight_qspec(config)}
        partition = [clamp, conv, conv.args[1]]
        bias = conv.args[2] if len(conv.args) > 2 else None
        if isinstance(bias, torch.fx.Node):
            inputs[bias] = get_bias_qspec(config)
            partition.append(bias)
        conv.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(input_qspec_map=inputs,
                                                             _annotated=True)
        clamp.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(
            output_qspec=get_output_act_qspec(config), _annotated=True)
        _mark_nodes_as_annotated(partition)
        count += 1
    return count


def _quantizer(per_channel: bool, qat: bool = False) -> "XNNPACKQuantizer":
    config = get_symmetric_quantization_config(is_per_channel=per_channel, is_qat=qat)

    class _Quantizer(XNNPACKQuantizer):
        """XNNPACK's quantizer, plus conv -> ReLU6 fused like conv -> ReLU."""

        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            _annotate_conv_clamp(model, config)
            return super().annotate(model)

    return _Quantizer().set_global(config)


def _calibrate(prepared: nn.Module, calibration: Iterable[torch.Tensor]) -> int:
    """Run the observers over every batch; returns how many batches were seen."""
    seen = 0
    with torch.no_grad():
        for batch in calibration:
            prepared(batch.cpu())
            seen += 1
    if seen == 0:
        raise LeannetError("calibration needs at least one batch of real inputs")
    return seen


def calibration_batches(loader: Iterable, max_batches: int) -> list[torch.Tensor]:
    """The first `max_batches` input batches of a (train) loader: real data for calibration."""
    if max_batches < 1:
        raise LeannetError(f"calibration batches must be at least 1, got {max_batches}")
    batches = []
    for inputs, _ in loader:
        batches.append(inputs if isinstance(inputs, torch.Tensor) else inputs[0])
        if len(batches) >= max_batches:
            break
    return batches
