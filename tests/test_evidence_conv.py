"""The convolution algorithms of benchmarks/evidence give torch's output on tiny, awkward shapes."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "evidence" / "conv_impl.py"
spec = importlib.util.spec_from_file_location("evidence_conv_impl", PATH)
assert spec is not None and spec.loader is not None
ci = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ci)

# (batch, in, out, height, width, stride, padding): odd sizes, non-square, stride 2, no padding
SHAPES = [(2, 3, 5, 7, 9, 1, 1), (1, 4, 6, 8, 8, 2, 1), (2, 3, 4, 6, 5, 1, 0),
          (1, 8, 8, 11, 10, 1, 1), (3, 1, 2, 4, 4, 1, 1), (1, 2, 3, 9, 7, 2, 0)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", ["im2col_gemm", "fft_conv", "winograd_f2x2_3x3"])
def test_full_convolutions_match_torch(name, shape):
    n, c, o, h, w, stride, padding = shape
    if name == "winograd_f2x2_3x3" and stride != 1:
        with pytest.raises(ValueError):
            ci.winograd_f2x2_3x3(torch.randn(n, c, h, w), torch.randn(o, c, 3, 3), stride, padding)
        return
    generator = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(n, c, h, w, generator=generator)
    weight = torch.randn(o, c, 3, 3, generator=generator)
    reference = torch.nn.functional.conv2d(x, weight, stride=stride, padding=padding)
    output = getattr(ci, name)(x, weight, stride, padding)
    assert output.shape == reference.shape
    torch.testing.assert_close(output, reference, rtol=1e-4, atol=1e-4)


def test_fft_with_pretransformed_weights():
    x, weight = torch.randn(2, 3, 9, 7), torch.randn(4, 3, 3, 3)
    fw = ci.fft_weights(weight, 9, 7)
    for stride in (1, 2):
        torch.testing.assert_close(ci.fft_conv(x, weight, stride, fw=fw),
                                   torch.nn.functional.conv2d(x, weight, stride=stride, padding=1),
                                   rtol=1e-4, atol=1e-4)


def test_winograd_with_pretransformed_weights_and_a_wrong_kernel():
    x, weight = torch.randn(1, 3, 6, 6), torch.randn(4, 3, 3, 3)
    u = ci.winograd_weights(weight)
    assert u.shape == (16, 4, 3)
    torch.testing.assert_close(ci.winograd_f2x2_3x3(x, weight, u=u),
                               torch.nn.functional.conv2d(x, weight, padding=1), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError):
        ci.winograd_f2x2_3x3(x, torch.randn(4, 3, 5, 5))


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_depthwise_separable_by_hand_matches_torch(shape):
    n, c, o, h, w, stride, padding = shape
    x = torch.randn(n, c, h, w)
    dw, pw = torch.randn(c, 1, 3, 3), torch.randn(o, c, 1, 1)
    torch.testing.assert_close(ci.depthwise_separable_unfold(x, dw, pw, stride, padding),
                               ci.depthwise_separable(x, dw, pw, stride, padding),
                               rtol=1e-4, atol=1e-4)


def test_mac_counts_agree_with_torch_flop_counter_and_the_mobilenet_ratio():
    from torch.utils.flop_counter import FlopCounterMode

    n, c, o, h = 2, 16, 32, 10
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.conv2d(torch.randn(n, c, h, h), torch.randn(o, c, 3, 3), padding=1)
    assert ci.conv_macs(n, c, o, h, h, 3, 1, 1) == counter.get_total_flops() // 2
    # full / separable = 1 / (1/O + 1/9): about 8-9x for wide layers, as MobileNet says
    ratio = ci.conv_macs(1, 512, 512, 14, 14, 3, 1, 1) / ci.separable_macs(1, 512, 512, 14, 14, 3, 1, 1)
    assert ratio == pytest.approx(1 / (1 / 512 + 1 / 9))
    assert 8.5 < ratio < 9
