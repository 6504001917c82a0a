"""BatchNorm folding is exact, ONNX export has a working dynamic batch and named tuple/dict outputs,
and onnxruntime parity is measured and enforced."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torchvision
from torch import nn

from leannet.errors import LeannetError
from leannet.export import (check_onnx_parity, export_checked, export_onnx, flatten_outputs,
                            fold_batchnorm, onnx_latency_ms)
from leannet.models import create_model

SMALL = (1, 1, 32, 32)
TINY = (1, 1, 16, 16)  # small_input MobileNet v2 still ends at 2x2: cheap but every layer runs


def _randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine terms, so folding has real work to do."""
    generator = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=generator) * 2 - 1)
            m.running_var.copy_(torch.rand(n, generator=generator) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=generator) - 0.5)
    return model.eval()


def _conv_channels(model: nn.Module) -> int:
    return sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d))


def _n_bn(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("build, shape", [
    (lambda: create_model("mobilenet_v2", num_classes=10, in_channels=1, small_input=True,
                          width_mult=0.5), TINY),
    (lambda: create_model("resnet20", num_classes=10, in_channels=1), SMALL),
    (lambda: torchvision.models.resnet18(num_classes=7), (1, 3, 64, 64)),
], ids=["mobilenet_v2_small", "resnet20", "torchvision_resnet18"])
def test_fold_batchnorm_is_exact(build, shape):
    torch.manual_seed(0)
    model = _randomise_bn(build())
    n_before = _n_bn(model)
    folded = fold_batchnorm(model)
    assert n_before > 10 and _n_bn(folded) == 0
    assert _n_bn(model) == n_before  # the original is untouched
    x = torch.randn(3, *shape[1:])
    with torch.no_grad():
        ref, out = model(x), folded(x)
    assert (out - ref).abs().max().item() <= 1e-5 * ref.abs().max().item()
    assert sum(p.numel() for p in folded.parameters()) < sum(p.numel() for p in model.parameters())
    if hasattr(model, "leannet_config"):
        assert folded.leannet_config == model.leannet_config


class _Branchy(nn.Module):
    """A BN on the input (no conv before it) and a conv whose raw output is also used."""

    def __init__(self) -> None:
        super().__init__()
        self.bn_in = nn.BatchNorm2d(3)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(self.bn_in(x))
        return self.bn(y) + y


def test_fold_leaves_unfoldable_batchnorms_and_stays_exact():
    model = _randomise_bn(_Branchy())
    folded = fold_batchnorm(model)
    assert _n_bn(folded) == 2
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x))


class _Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) if x.sum() > 0 else x


def test_untraceable_model_gives_clear_error():
    with pytest.raises(LeannetError, match="torch.fx could not trace _Untraceable"):
        fold_batchnorm(_Untraceable())


def test_onnx_export_parity_and_dynamic_batch(tmp_path):
    torch.manual_seed(0)
    model = _randomise_bn(create_model("mobilenet_v2", num_classes=10, in_channels=1,
                                       small_input=True, width_mult=0.35, image_size=16))
    path = tmp_path / "model.onnx"
    info = export_onnx(model, path, TINY[1:])
    assert info["opset"] == 17 and info["outputs"] == ["output"] and info["folded_batchnorms"] > 10
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == 17
    assert "BatchNormalization" not in {node.op_type for node in proto.graph.node}
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    parity = check_onnx_parity(model, path, TINY, batches=(1, 4))
    assert parity["max_abs_diff"] < 1e-4 and parity["max_rel_diff"] < 1e-4
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"input": np.zeros((5, 1, 16, 16), np.float32)})
    assert out.shape == (5, 10)
    assert onnx_latency_ms(path, TINY, runs=3, warmup=1, threads=1) > 0
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


class _TwoHeads(nn.Module):
    """A shared trunk with a dict of heads, one of which returns a tuple."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.cls = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
        self.seg = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> dict:
        features = self.trunk(x)
        seg = self.seg(features)
        return {"cls": self.cls(features), "seg": (seg, seg.sigmoid())}


def test_dict_and_tuple_outputs_are_named(tmp_path):
    torch.manual_seed(0)
    model = _randomise_bn(_TwoHeads())
    path = tmp_path / "heads.onnx"
    info = export_onnx(model, path, (1, 1, 12, 12))
    assert info["outputs"] == ["cls", "seg_0", "seg_1"]
    assert [o.name for o in onnx.load(str(path)).graph.output] == ["cls", "seg_0", "seg_1"]
    model.train()  # export and parity evaluate in eval mode but leave the caller's mode alone
    parity = check_onnx_parity(model, path, (1, 12, 12), batches=(1, 4))
    assert parity["max_rel_diff"] < 1e-4 and model.training
    info = export_checked(model, tmp_path / "again.onnx", (1, 1, 12, 12))
    assert info["max_abs_diff"] < 1e-4 and model.training
    assert [n for n, _ in flatten_outputs((torch.zeros(1), torch.zeros(1)))] == [
        "output_0", "output_1"]


def test_parity_failure_is_reported(tmp_path):
    torch.manual_seed(0)
    model = _TwoHeads().eval()
    path = tmp_path / "r.onnx"
    export_onnx(model, path, (1, 1, 8, 8), dynamic_batch=False)
    assert check_onnx_parity(model, path, (1, 8, 8), batches=(1,))["max_rel_diff"] < 1e-4
    with pytest.raises(LeannetError, match="onnxruntime failed on a batch of 4"):
        check_onnx_parity(model, path, (1, 8, 8), batches=(1, 4))  # exported with a fixed batch
    with torch.no_grad():
        model.cls[2].bias.add_(0.01)  # a small drift in one output must be caught
    with pytest.raises(LeannetError, match="ONNX parity failed"):
        check_onnx_parity(model, path, (1, 8, 8), batches=(1,))


def test_bad_inputs(tmp_path):
    model = create_model("resnet20", num_classes=10, in_channels=1)
    with pytest.raises(LeannetError, match="must end in .onnx"):
        export_onnx(model, tmp_path / "model.txt", SMALL)
    with pytest.raises(LeannetError, match="bad input shape"):
        export_onnx(model, tmp_path / "model.onnx", (1, 0, 32))
    with pytest.raises(LeannetError, match="opset"):
        export_onnx(model, tmp_path / "model.onnx", SMALL, opset=9)
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(LeannetError, match="not a loadable ONNX model"):
        check_onnx_parity(model, tmp_path / "junk.onnx", SMALL)
    with pytest.raises(LeannetError, match="no ONNX file"):
        onnx_latency_ms(tmp_path / "absent.onnx", SMALL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.onnx"]


def test_pruned_model_folder_exports_with_parity(tmp_path):
    """A model pruned by leannet, saved and reloaded (plans replayed) exports and matches."""
    from leannet.checkpoint import load, save
    from leannet.models import model_input_shape
    from leannet.prune import Pruner, Target

    torch.manual_seed(0)
    model = _randomise_bn(create_model("resnet20", num_classes=10, in_channels=1, image_size=16))
    pruner = Pruner(model, torch.randn(2, 1, 16, 16), criterion="l1")
    plan = pruner.plan(Target(macs=0.5))
    pruner.apply(plan, verify=True)  # records the plan for save/load
    reloaded = load(save(model, tmp_path / "pruned"))
    fresh = create_model("resnet20", num_classes=10, in_channels=1, image_size=16)
    assert _conv_channels(reloaded) < 0.8 * _conv_channels(fresh)
    info = export_checked(reloaded, tmp_path / "pruned.onnx", model_input_shape(reloaded, 1))
    assert info["folded_batchnorms"] == 21 and info["max_rel_diff"] < 1e-4
    x = torch.randn(2, 1, 16, 16)
    session = ort.InferenceSession(str(tmp_path / "pruned.onnx"),
                                   providers=["CPUExecutionProvider"])
    with torch.no_grad():
        np.testing.assert_allclose(session.run(None, {"input": x.numpy()})[0],
                                   model.eval()(x).numpy(), rtol=1e-4, atol=1e-4)
