"""Channel rounding that fits the runtime's kernels (`leannet prune`'s default --round-to), and
int8 MobileNets whose ReLU6 is fused into the convolution (one quantize op per conv output)."""
from __future__ import annotations

from collections import Counter

import pytest
import torch

from leannet.deploy.alignment import auto_round_to
from leannet.deploy.quantize import quantize_ptq
from leannet.deploy.runtimes import get_runtime
from leannet.errors import LeannetError
from leannet.models import create_model
from leannet.prune import Pruner, Target


def test_runtime_multiples_and_auto_round_to():
    assert get_runtime("onnxruntime").channel_multiple("int8") == 16
    assert get_runtime("torch").channel_multiple("fp32") == 1
    torch.manual_seed(0)
    wide = create_model("mobilenet_v2", num_classes=10, small_input=True, image_size=32)
    x = torch.randn(2, 3, 32, 32)
    value, why = auto_round_to(wide, x, Target(macs=0.5), "onnxruntime", "int8")
    assert value == 16 and "multiples of 16" in why
    plan = Pruner(wide, x).plan(Target(macs=0.5, round_to=value))
    assert all(len(g["keep"]) % 16 == 0 for g in plan.groups.values())
    assert auto_round_to(wide, x, Target(macs=0.5), "torch", "fp32")[0] == 1
    # too narrow for 16 (32 and 64 channels, 10% of the MACs): falls back to what reaches
    narrow = create_model("simple_cnn", num_classes=10, in_channels=1, image_size=16)
    small = torch.randn(2, 1, 16, 16)
    with pytest.raises(LeannetError, match="not reachable"):
        Pruner(narrow, small).plan(Target(macs=0.1, round_to=16))
    value, why = auto_round_to(narrow, small, Target(macs=0.1), "onnxruntime", "int8")
    assert value < 16 and "largest power of two" in why
    Pruner(narrow, small).plan(Target(macs=0.1, round_to=value))
    # reachable with 16 only far past the target (0.32 of the MACs for 0.5): finer rounding
    coarse = create_model("simple_cnn", channels=[16, 32], hidden=32, image_size=16)
    value, _ = auto_round_to(coarse, small, Target(macs=0.5), "onnxruntime", "int8")
    plan = Pruner(coarse, small).plan(Target(macs=0.5, round_to=value))
    assert value < 16 and plan.meta["macs_fraction"] >= 0.45
    with pytest.raises(LeannetError, match="unknown runtime"):
        auto_round_to(wide, x, Target(macs=0.5), "tflite", "int8")


def test_relu6_is_fused_into_int8_convolutions():
    pytest.importorskip("executorch")
    torch.manual_seed(0)
    model = create_model("mobilenet_v2", num_classes=10, small_input=True, width_mult=0.5,
                         image_size=32).eval()
    for m in model.modules():  # a fresh model's outputs are ~1e-8, below int8's resolution
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
            torch.nn.init.normal_(m.bias, 0, 0.1)
    torch.nn.init.normal_(model.classifier.fc.weight, std=0.1)
    x = torch.randn(4, 3, 32, 32)
    quantized = quantize_ptq(model, x[:1], [x])
    ops = Counter(str(n.target) for n in quantized.graph.nodes if n.op == "call_function")
    convs, adds = ops["aten.conv2d.default"], ops["aten.add.Tensor"]
    # one quantize per conv/add output, the input and the pooled features; not one more per
    # ReLU6 (there are 35), as XNNPACK's quantizer alone gives
    assert ops["quantized_decomposed.quantize_per_tensor.default"] <= convs + adds + 5
    with torch.no_grad():
        reference, got = model(x), quantized(x)
    similarity = torch.nn.functional.cosine_similarity(reference.flatten(), got.flatten(), dim=0)
    assert similarity > 0.999 and torch.equal(reference.argmax(1), got.argmax(1))
