"""YOLO v1/v2/v3 losses: near zero on outputs that encode the targets exactly, falling under SGD,
and decode + class-aware NMS returning the encoded boxes."""
import math

import pytest
import torch

from leannet.data.box_augment import detection_collate
from leannet.detect.decode import decode
from leannet.detect.losses import yolo_loss
from leannet.models import create_model

BIG = 30.0
SIZE = 64
# One box 20x20 centred at (24, 40): cell (1, 2) of the 4x4 stride-16 grid, offsets (0.5, 0.5).
BOX = torch.tensor([[14.0, 30.0, 34.0, 50.0]])
V3_ANCHORS = [[2, 2], [2, 8], [8, 2], [20, 20], [6, 40], [40, 6], [50, 50], [20, 60], [60, 20]]


def tiny(head, **kw):
    return create_model("yolo", backbone="mobilenet_v2", backbone_kwargs={"width_mult": 0.25},
                        head=head, num_classes=3, in_channels=1, image_size=SIZE,
                        neck_channels=16, **kw)


def perfect(spec, label=2, anchor=0):
    """Raw outputs encoding BOX with class `label`: every other predictor says 'no object'."""
    def logit(p):
        return math.log(p / (1 - p))

    out = {}
    for key, stride in zip(spec.keys, spec.strides):
        g = SIZE // stride
        a, c = spec.boxes_per_cell, spec.num_classes
        if spec.head == "v1":
            raw = torch.zeros(1, a * 5 + c, g, g)
            raw[0, 4:a * 5:5] = -BIG
            if stride == 16:
                raw[0, 2:4, 2, 1] = logit(math.sqrt(20 / SIZE))
                raw[0, 4, 2, 1] = BIG
                raw[0, a * 5 + label, 2, 1] = BIG
        else:
            raw = torch.zeros(1, a, 5 + c, g, g)
            raw[0, :, 4] = -BIG
            raw[0, :, 5:] = -BIG
            if stride == 16:
                raw[0, anchor, 4, 2, 1] = BIG
                raw[0, anchor, 5 + label, 2, 1] = BIG
            raw = raw.reshape(1, a * (5 + c), g, g)
        out[key] = raw
    return out


# Anchors are sorted by area, so (20, 20) is anchor 2 of its level in both anchor cases.
CASES = [("v1", {"grid_stride": 16}, 0),
         ("v2", {"grid_stride": 16, "anchors": [[20, 20], [6, 40], [40, 6]]}, 2),
         ("v3", {"anchors": V3_ANCHORS}, 2)]


@pytest.mark.parametrize("head,kw,anchor", CASES)
def test_perfect_predictions_give_zero_loss_and_decode_to_the_box(head, kw, anchor):
    spec = tiny(head, **kw).detect_spec
    targets = [{"boxes": BOX, "labels": torch.tensor([2])}]
    outputs = perfect(spec, 2, anchor)
    loss, parts = yolo_loss(outputs, targets, spec)
    assert float(loss) < 1e-3, parts
    worse, _ = yolo_loss(perfect(spec, 1, anchor), targets, spec)  # wrong class costs
    assert float(worse) > 1.0
    found = decode(outputs, spec, conf_threshold=0.5)[0]
    assert found["labels"].tolist() == [2]
    assert torch.allclose(found["boxes"], BOX, atol=1e-3)
    assert float(found["scores"][0]) > 0.99


def test_class_aware_nms():
    spec = tiny("v2", grid_stride=16, anchors=[[20, 20], [21, 21], [60, 60]]).detect_spec
    out = perfect(spec, 2, 0)["s16"].view(1, 3, 8, 4, 4)
    out[0, 1] = out[0, 0]  # anchor 1 repeats anchor 0's near-identical box
    out[0, 1, 2:4] = math.log(20 / 21)
    same = decode({"s16": out.reshape(1, 24, 4, 4)}, spec, 0.5)[0]
    assert same["labels"].tolist() == [2]  # the duplicate is suppressed
    out[0, 1, 5 + 2], out[0, 1, 5 + 0] = -BIG, BIG  # the duplicate now says class 0
    both = decode({"s16": out.reshape(1, 24, 4, 4)}, spec, 0.5)[0]
    assert sorted(both["labels"].tolist()) == [0, 2]  # NMS is per class


@pytest.mark.parametrize("head", ["v1", "v2", "v3"])
def test_loss_falls_on_a_few_steps(head, digits_batch):
    torch.manual_seed(0)
    model = create_model("yolo", backbone="mobilenet_v2", backbone_kwargs={"width_mult": 0.25},
                         head=head, num_classes=10, in_channels=1, image_size=SIZE,
                         neck_channels=16)
    images, targets = digits_batch
    optimizer = torch.optim.Adam(model.parameters(), 1e-2)
    losses = []
    for _ in range(12):
        loss, _ = yolo_loss(model(images), targets, model.detect_spec)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.fixture(scope="module")
def digits_batch():
    from leannet.data import get_source

    source = get_source("digits-detect", image_size=SIZE, num_train=8, num_val=4, augment=False)
    return detection_collate([source.train[i] for i in range(8)])
