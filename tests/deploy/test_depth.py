"""Depth pruning: whole residual blocks removed, exact where the residual branch is zero, and
measured faster in ONNX Runtime on one thread."""
from __future__ import annotations

import copy

import pytest
import torch

from leannet.deploy.matrix import build_matrix
from leannet.errors import LeannetError
from leannet.measure import count_macs, time_latencies
from leannet.models import create_model
from leannet.prune.depth import block_scores, plan_depth, remove_blocks, removable_blocks


def _mobilenet():
    torch.manual_seed(0)
    return create_model("mobilenet_v2", num_classes=10, small_input=True, width_mult=0.5,
                        image_size=32).eval()


def _silence(block_module, last_bn):
    """Zero the BatchNorm that ends the residual branch: the branch then adds exactly 0."""
    bn = block_module.get_submodule(last_bn)
    with torch.no_grad():
        bn.weight.zero_()
        bn.bias.zero_()


@pytest.mark.parametrize("build,last_bn,expected", [
    (_mobilenet, "conv.3", 10),  # MobileNetV2: 10 inverted residuals keep their input's shape
    (lambda: create_model("resnet20", num_classes=10).eval(), "bn2", 7),  # 9 blocks, 2 project
])
def test_silent_block_is_ranked_first_and_removed_exactly(build, last_bn, expected):
    model = build()
    blocks = removable_blocks(model)
    assert len(blocks) == expected
    x = torch.randn(4, 3, 32, 32)
    chosen = blocks[len(blocks) // 2].name
    _silence(model.get_submodule(chosen), last_bn)
    before = model(x)
    scores = block_scores(model, [x])
    assert scores[chosen] == 0 and all(v > 0 for k, v in scores.items() if k != chosen)
    assert plan_depth(model, [x], 1) == [chosen]
    remove_blocks(model, [chosen])
    assert torch.equal(model(x), before)  # exact: the removed branch added nothing
    assert len(removable_blocks(model)) == expected - 1
    # removing a block that does add something changes the output
    other = removable_blocks(model)[0].name
    remove_blocks(model, [other])
    change = (model(x) - before).abs().max() / before.abs().max()
    assert change > 1e-3


def test_fewer_blocks_run_faster_in_onnxruntime():
    torch.manual_seed(0)
    model = create_model("mobilenet_v2", num_classes=10, small_input=True, width_mult=1.0,
                         image_size=32).eval()
    x = torch.randn(1, 3, 32, 32)
    shallow = remove_blocks(copy.deepcopy(model), plan_depth(model, [torch.randn(8, 3, 32, 32)],
                                                             6))
    assert count_macs(shallow, x) < count_macs(model, x)
    items = {}
    for key, candidate in (("base", model), ("shallow", shallow)):
        rows, timed = build_matrix(candidate, x, ["onnxruntime"], ["fp32"], threads=1)
        assert rows[0]["parity"]  # the exported file matches torch
        items[key] = timed[0]
    latency = time_latencies(items, threads=1, runs=20, rounds=4, warn=False)
    assert latency["shallow"].median_ms < 0.9 * latency["base"].median_ms


def test_bad_requests_are_one_line():
    model = _mobilenet()
    x = torch.randn(2, 3, 32, 32)
    with pytest.raises(LeannetError, match="remove at least one block"):
        plan_depth(model, [x], 0)
    with pytest.raises(LeannetError, match="has only 10 removable blocks"):
        plan_depth(model, [x], 11)
    with pytest.raises(LeannetError, match="not residual blocks"):
        remove_blocks(model, ["features.1"])
    with pytest.raises(LeannetError, match="no residual block"):
        block_scores(create_model("simple_cnn", num_classes=10, in_channels=1, image_size=16),
                     [torch.randn(1, 1, 16, 16)])
    with pytest.raises(LeannetError, match="at least one batch"):
        block_scores(model, [])
