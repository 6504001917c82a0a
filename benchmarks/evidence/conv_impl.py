"""Five ways to compute a 2D convolution layer, written out so they can be timed side by side.

All take torch's layout and semantics (cross-correlation, NCHW input, OIHW weights, zero padding)
and must give torch's `F.conv2d` output within float tolerance (tests/test_evidence_conv.py):
- `direct`: torch's own `F.conv2d` (oneDNN / its native kernels on CPU);
- `im2col_gemm`: unfold every receptive field into a column, then one matrix multiply;
- `fft_conv`: pointwise products in the frequency domain, one batched GEMM per frequency;
- `winograd_f2x2_3x3`: Lavin & Gray's F(2x2, 3x3) minimal filtering, 16 batched GEMMs;
- `depthwise_separable`: a different, cheaper layer (3x3 per channel, then 1x1 across channels),
  the MobileNet replacement for a full 3x3 convolution, via torch's grouped conv;
  `depthwise_separable_unfold` computes the same thing by hand, to check it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def direct(x: Tensor, w: Tensor, stride: int = 1, padding: int = 1) -> Tensor:
    """torch's convolution: the reference."""
    return F.conv2d(x, w, stride=stride, padding=padding)


def _out_size(size: int, k: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - k) // stride + 1


def im2col_gemm(x: Tensor, w: Tensor, stride: int = 1, padding: int = 1) -> Tensor:
    """Unfold (N, C*k*k, L) columns and multiply by the (O, C*k*k) weight matrix."""
    n, _, h, wd = x.shape
    o, _, k, _ = w.shape
    cols = F.unfold(x, k, padding=padding, stride=stride)
    out = w.reshape(o, -1) @ cols  # (N, O, L): one GEMM per image, batched
    return out.reshape(n, o, _out_size(h, k, stride, padding), _out_size(wd, k, stride, padding))


def fft_weights(w: Tensor, height: int, width: int, padding: int = 1) -> Tensor:
    """The kernels' transform for inputs of height x width, as (F, C, O); done once per layer
    and input size, not per call (as Winograd's `winograd_weights`)."""
    o, c = w.shape[:2]
    fw = torch.fft.rfft2(w.flip(-1, -2), s=(height + 2 * padding, width + 2 * padding))
    return fw.reshape(o, c, -1).permute(2, 1, 0).contiguous()


def fft_conv(x: Tensor, w: Tensor, stride: int = 1, padding: int = 1,
             fw: Tensor | None = None) -> Tensor:
    """Circular convolution of the padded input with the flipped kernel, via rfft2, keeping the
    positions where no wrap-around happened; channels are summed as a complex GEMM per frequency.
    `fw` takes pre-transformed kernels (`fft_weights`)."""
    n, c, h, wd = x.shape
    o, _, k, _ = w.shape
    xp = F.pad(x, (padding, padding, padding, padding))
    hp, wp = xp.shape[-2:]
    fx = torch.fft.rfft2(xp)  # (N, C, Hp, Wp//2+1)
    fw = fft_weights(w, h, wd, padding) if fw is None else fw  # (F, C, O)
    freq = fx.shape[-2] * fx.shape[-1]
    fy = torch.bmm(fx.reshape(n, c, freq).permute(2, 0, 1), fw)  # (F, N, C) @ (F, C, O)
    y = torch.fft.irfft2(fy.permute(1, 2, 0).reshape(n, o, hp, -1), s=(hp, wp))
    return y[:, :, k - 1::stride, k - 1::stride][:, :, :_out_size(h, k, stride, padding),
                                                 :_out_size(wd, k, stride, padding)]


# Lavin & Gray (2016), F(2x2, 3x3): Y = A^T [ (G g G^T) * (B^T d B) ] A
_BT = torch.tensor([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=torch.float32)
_G = torch.tensor([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=torch.float32)
_AT = torch.tensor([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=torch.float32)


def winograd_weights(w: Tensor) -> Tensor:
    """The transformed filters U = G g G^T as (16, O, C); done once per layer, not per call."""
    g = _G.to(w)
    u = g @ w @ g.T  # (O, C, 4, 4)
    return u.permute(2, 3, 0, 1).reshape(16, w.shape[0], w.shape[1])


def winograd_f2x2_3x3(x: Tensor, w: Tensor, stride: int = 1, padding: int = 1,
                      u: Tensor | None = None) -> Tensor:
    """3x3, stride 1 only: each 4x4 input tile gives a 2x2 output tile with 16 multiplies per
    channel pair instead of 36. `u` takes pre-transformed weights (`winograd_weights`)."""
    if w.shape[-1] != 3 or w.shape[-2] != 3 or stride != 1:
        raise ValueError("Winograd F(2x2, 3x3) needs a 3x3 kernel and stride 1")
    n, c, h, wd = x.shape
    o = w.shape[0]
    ho, wo = _out_size(h, 3, 1, padding), _out_size(wd, 3, 1, padding)
    th, tw = (ho + 1) // 2, (wo + 1) // 2
    # pad so that tiles of 4 with stride 2 cover every output (extra zero rows/cols at the end)
    xp = F.pad(x, (padding, 2 * tw + 2 - wd - padding, padding, 2 * th + 2 - h - padding))
    tiles = xp.unfold(2, 4, 2).unfold(3, 4, 2)  # (N, C, th, tw, 4, 4)
    bt = _BT.to(x)
    v = bt @ tiles @ bt.T  # (N, C, th, tw, 4, 4)
    v = v.permute(4, 5, 1, 0, 2, 3).reshape(16, c, n * th * tw)
    u = winograd_weights(w) if u is None else u
    m = torch.bmm(u, v).reshape(4, 4, o, n, th, tw).permute(3, 2, 4, 5, 0, 1)  # (N,O,th,tw,4,4)
    at = _AT.to(x)
    y = at @ m @ at.T  # (N, O, th, tw, 2, 2)
    y = y.permute(0, 1, 2, 4, 3, 5).reshape(n, o, 2 * th, 2 * tw)
    return y[:, :, :ho, :wo]


def depthwise_separable(x: Tensor, dw: Tensor, pw: Tensor, stride: int = 1,
                        padding: int = 1) -> Tensor:
    """3x3 depthwise (C, 1, 3, 3) then 1x1 pointwise (O, C, 1, 1), by torch's kernels."""
    return F.conv2d(F.conv2d(x, dw, stride=stride, padding=padding, groups=x.shape[1]), pw)


def depthwise_separable_unfold(x: Tensor, dw: Tensor, pw: Tensor, stride: int = 1,
                               padding: int = 1) -> Tensor:
    """The same layer by hand: per-channel weighted sums of unfolded patches, then a GEMM."""
    n, c, h, wd = x.shape
    k = dw.shape[-1]
    cols = F.unfold(x, k, padding=padding, stride=stride).reshape(n, c, k * k, -1)
    depth = (cols * dw.reshape(1, c, k * k, 1)).sum(2)  # (N, C, L)
    out = pw.reshape(pw.shape[0], c) @ depth
    return out.reshape(n, -1, _out_size(h, k, stride, padding), _out_size(wd, k, stride, padding))


def conv_macs(n: int, c: int, o: int, h: int, w: int, k: int, stride: int, padding: int) -> int:
    """Multiply-accumulates of a full k x k convolution (the direct algorithm's count)."""
    return n * o * c * k * k * _out_size(h, k, stride, padding) * _out_size(w, k, stride, padding)


def separable_macs(n: int, c: int, o: int, h: int, w: int, k: int, stride: int, padding: int) -> int:
    """Multiply-accumulates of depthwise k x k plus pointwise 1x1."""
    spatial = _out_size(h, k, stride, padding) * _out_size(w, k, stride, padding)
    return n * spatial * (c * k * k + c * o)
