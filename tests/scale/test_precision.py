"""Mixed precision, channels-last, compile and the backward hook of `fit`, on real digits.

Each runs on the CPU here and on CUDA when present (the same test, a device parameter).
"""
import pytest
import torch
from torch import nn

from leannet.data import get_source
from leannet.data.loaders import calibration_loader, make_loaders
from leannet.errors import LeannetError
from leannet.models import create_model
from leannet.train import ClassificationTask, evaluate, fit
from leannet.train.fit import check_amp
from tests.scale.conftest import DEVICES


@pytest.fixture(scope="module")
def digits():
    return get_source("digits", image_size=8)


def tiny(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("simple_cnn", num_classes=10, in_channels=1, image_size=8,
                        channels=[8, 16], hidden=32)


def train(digits, device, epochs=2, **options):
    model = tiny()
    loaders = make_loaders(digits, 64, seed=0)
    history = fit(model, *loaders, ClassificationTask(), epochs, optimizer="adamw", lr=0.01,
                  weight_decay=0.0, seed=0, progress=False, device=device, **options)
    return model, history


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_autocast_trains_and_the_loss_falls(digits, device):
    model, history = train(digits, device, amp="bf16")
    assert history[1]["loss"] < history[0]["loss"]
    assert history[1]["accuracy"] > 0.6
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32


@pytest.mark.parametrize("device", DEVICES)
def test_fp16_trains_with_a_scaler_or_is_one_clear_line(digits, device):
    try:
        check_amp("fp16", torch.device(device))
    except LeannetError as err:  # a build without fp16 autocast on this device
        assert "\n" not in str(err) and "--amp fp16" in str(err)
        with pytest.raises(LeannetError, match="--amp fp16"):
            train(digits, device, epochs=1, amp="fp16")
        return
    _, history = train(digits, device, amp="fp16")
    assert history[1]["loss"] < history[0]["loss"] and history[1]["accuracy"] > 0.6


def test_an_unknown_precision_is_one_line():
    with pytest.raises(LeannetError, match="expected bf16 or fp16"):
        check_amp("fp8", torch.device("cpu"))


@pytest.mark.parametrize("device", DEVICES)
def test_channels_last_gives_the_same_outputs_and_training(digits, device):
    model = tiny().to(device).eval()
    x = next(iter(make_loaders(digits, 16)[1]))[0].to(device)
    with torch.no_grad():
        plain = model(x)
        nhwc = model.to(memory_format=torch.channels_last)(
            x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(plain, nhwc, atol=1e-5, rtol=1e-5)
    _, reference = train(digits, device, epochs=1)
    model, history = train(digits, device, epochs=1, channels_last=True)
    assert history[0]["loss"] == pytest.approx(reference[0]["loss"], rel=1e-3)
    assert history[0]["accuracy"] == pytest.approx(reference[0]["accuracy"], abs=0.02)
    assert next(model.parameters()).is_contiguous()  # handed back in the default format


def test_a_backward_hook_replaces_loss_backward_and_sees_the_scaled_loss(digits):
    seen = []

    def backward(loss, model):
        seen.append(float(loss.detach()))
        loss.backward()

    _, history = train(digits, "cpu", epochs=1, backward=backward)
    assert len(seen) == len(make_loaders(digits, 64)[0]) and history[0]["accuracy"] > 0.3
    try:
        check_amp("fp16", torch.device("cpu"))
    except LeannetError:
        return
    scaled = []
    train(digits, "cpu", epochs=1, amp="fp16",
          backward=lambda loss, model: (scaled.append(float(loss.detach())), loss.backward()))
    assert scaled[0] > 1000 * history[0]["loss"]  # GradScaler starts at 2**16


def test_the_task_may_own_backward(digits):
    class Own(ClassificationTask):
        calls = 0

        def backward(self, loss, model):
            Own.calls += 1
            loss.backward()

    model = tiny()
    fit(model, *make_loaders(digits, 64), Own(), 1, seed=0, progress=False, device="cpu")
    assert Own.calls == len(make_loaders(digits, 64)[0])


def test_evaluate_follows_the_model_and_calibration_data_is_plain(digits):
    model = tiny()
    _, val = make_loaders(digits, 64)
    assert evaluate(model, val, ClassificationTask())["accuracy"] >= 0.0
    assert next(model.parameters()).device.type == "cpu"  # not moved to a GPU behind our back
    loader = calibration_loader(digits, 32, seed=5, max_batches=3)
    first = torch.cat([x for x, _ in loader])
    again = torch.cat([x for x, _ in loader])
    assert first.shape[0] == 96 and torch.equal(first, again)  # no random crops

