"""Models: paper/torchvision parameter and MAC counts, small-input variants, blocks' structure."""
import pytest
import torch
import torchvision

import leannet
from leannet.errors import LeannetError
from leannet.measure import count_macs, count_params
from leannet.models import create_model, list_models, model_input_shape
from leannet.nn import InvertedResidual, make_divisible


def test_mobilenet_v2_matches_torchvision_exactly():
    ours = create_model("mobilenet_v2")
    reference = torchvision.models.mobilenet_v2()
    assert count_params(ours) == count_params(reference) == 3_504_872
    assert count_macs(ours, (1, 3, 224, 224)) == pytest.approx(300e6, rel=0.02)


def test_mobilenet_v1_matches_paper():
    model = create_model("mobilenet_v1")
    assert count_params(model) == pytest.approx(4.23e6, rel=0.005)
    assert count_macs(model, (1, 3, 224, 224)) == pytest.approx(569e6, rel=0.005)


def test_width_multiplier_shrinks_roughly_quadratically():
    full = count_macs(create_model("mobilenet_v1"), (1, 3, 224, 224))
    half = count_macs(create_model("mobilenet_v1", width_mult=0.5), (1, 3, 224, 224))
    assert 0.2 < half / full < 0.32  # paper: 149M vs 569M


@pytest.mark.parametrize("name,params", [("resnet20", 0.27e6), ("resnet56", 0.85e6)])
def test_cifar_resnets_have_paper_sizes(name, params):
    model = create_model(name)
    assert count_params(model) == pytest.approx(params, rel=0.02)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2"])
def test_small_input_variants_keep_resolution(name):
    model = create_model(name, small_input=True, num_classes=10, in_channels=1, width_mult=0.5)
    assert model_input_shape(model) == (1, 1, 32, 32)
    features = model.features(torch.randn(2, 1, 32, 32))
    assert features.shape[-1] == 4  # total stride 8 instead of 32
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_simple_cnn_pooling_and_bottleneck(pool):
    model = create_model("simple_cnn", pool=pool, bottleneck=8, image_size=28)
    kinds = {type(m).__name__ for m in model.modules()}
    assert ("MaxPool2d" if pool == "max" else "AvgPool2d") in kinds
    assert model.fc1.in_features == 8 * 7 * 7
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)


def test_inverted_residual_uses_residual_only_when_shapes_match():
    same = InvertedResidual(16, 16, 1, 6)
    strided = InvertedResidual(16, 16, 2, 6)
    widened = InvertedResidual(16, 24, 1, 6)
    assert same.use_residual and not strided.use_residual and not widened.use_residual
    projection = same.conv[-2]
    assert projection.kernel_size == (1, 1)
    assert not any(isinstance(m, (torch.nn.ReLU, torch.nn.ReLU6)) for m in same.conv[-2:])
    assert same.conv[0][0].out_channels == 96  # expansion by t = 6


def test_make_divisible_rounds_to_eight_without_losing_more_than_ten_percent():
    assert make_divisible(32 * 0.35) == 16  # 8 would lose more than 10% of 11.2
    assert make_divisible(18) == 24 and make_divisible(100) == 104 and make_divisible(91) == 88
    assert all(make_divisible(v) % 8 == 0 and make_divisible(v) >= 0.9 * v for v in range(8, 400))


def test_unknown_model_and_argument_give_one_line_errors():
    with pytest.raises(LeannetError, match="unknown model 'nope'.*mobilenet_v2"):
        create_model("nope")
    with pytest.raises(LeannetError, match="does not take colour"):
        create_model("resnet20", colour=3)


def test_registry_lists_the_foundation_models():
    assert {"mobilenet_v1", "mobilenet_v2", "resnet20", "resnet56", "simple_cnn"} <= set(list_models())
    assert leannet.create_model is create_model
