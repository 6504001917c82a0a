"""Multi-head models: heads of four kinds (and a user's own) on one backbone at different depths,
digits-detect's per-task labels (boxes, digit masks, count, digits present) moving together under
augmentation, coco128's masks from masks.yaml lining up with its boxes, and the per-task metrics
(mIoU, pixel accuracy, label mAP) against known values."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score
from torch import nn

from leannet.data import get_source
from leannet.data.multihead import IGNORE, multi_target_collate, multihead_view
from leannet.errors import LeannetError
from leannet.models import create_model
from leannet.models.heads import PooledHead, register_head
from leannet.multitask.heads import head_tasks
from leannet.multitask.metrics import (confusion_matrix, multilabel_scores,
                                       segmentation_scores)
from leannet.multitask.tasks import MultiTask
from leannet.train.fit import evaluate
from tests.helpers import shared_data

HEADS = {"detect": {"kind": "detect", "classes": 10}, "segment": {"kind": "segment", "classes": 11},
         "count": {"kind": "classify", "classes": 5, "tap": 0},
         "digits": {"kind": "multilabel", "classes": 10}}


def _model(heads=HEADS):
    torch.manual_seed(0)
    return create_model("multi_head", heads=heads, backbone_kwargs={"width_mult": 0.25},
                        in_channels=1, image_size=64)


def test_heads_of_four_kinds_share_one_backbone_at_different_depths():
    model = _model()
    out = model.eval()(torch.rand(2, 1, 64, 64))
    assert out["segment"].shape == (2, 11, 64, 64)  # logits at input size
    assert out["count"].shape == (2, 5) and out["digits"].shape == (2, 10)
    levels = sum((64 // s) ** 2 for s in (8, 16, 32))
    assert out["detect"].shape == (2, 3 * 15, levels)  # v3: 3 anchors x (5 + 10), all levels
    taps = model.backbone.channels
    assert model.heads["count"].body[-1].in_features == taps[0]  # the shallowest tap
    assert model.heads["digits"].body[-1].in_features == taps[-1]  # the deepest (default)
    levels_back = model.heads["detect"].split(out["detect"], model.heads["detect"].detect_spec)
    assert [v.shape[-1] for v in levels_back.values()] == [8, 4, 2]
    # one backbone: every head's gradient reaches the same first convolution
    first = next(model.shared_parameters())
    for name in HEADS:
        model.zero_grad()
        model.train()(torch.rand(2, 1, 64, 64))[name].float().pow(2).mean().backward()
        assert first.grad is not None and first.grad.abs().sum() > 0, name


class CentreHead(nn.Module):
    """A user's head: regress the centre of mass of the ink from pooled deepest features."""

    def __init__(self, channels):
        super().__init__()
        self.body = PooledHead(channels, 2, -1)

    def forward(self, feats):
        return self.body(feats)

    def make_task(self):
        return CentreTask()


class CentreTask:
    main_metric = "neg_mse"

    def loss(self, outputs, targets):
        return F.mse_loss(outputs, targets)

    def meter(self):
        meter = type("M", (), {})()
        meter.errors = []
        meter.update = lambda o, t: meter.errors.append(float(F.mse_loss(o, t)))
        meter.compute = lambda: {"neg_mse": -float(np.mean(meter.errors))}
        return meter


def test_a_users_head_kind_is_one_register_call():
    register_head("centre", lambda taps, spec: CentreHead(taps.channels[-1]))
    model = _model({"centre": {"kind": "centre"}, "count": {"kind": "classify", "classes": 3}})
    task = MultiTask(["centre", "count"], subtasks=head_tasks(model))
    x = torch.rand(4, 1, 64, 64)
    targets = {"centre": torch.rand(4, 2), "count": torch.tensor([0, 1, 2, 1])}
    metrics = evaluate(model, [(x, targets)], task)
    assert metrics["centre/neg_mse"] < 0 and 0 <= metrics["count/accuracy"] <= 1
    with pytest.raises(LeannetError, match="unknown head kind 'depth'"):
        _model({"d": {"kind": "depth"}})
    with pytest.raises(LeannetError, match="needs 'classes' >= 1"):
        _model({"c": {"kind": "classify", "classes": 0}})


def test_digit_masks_counts_and_labels_match_the_boxes():
    source = multihead_view(get_source("digits-detect", image_size=64, num_train=16, num_val=8),
                            "detect,segment,classify,labels")
    canvases = source.val.base
    for index in range(8):
        image, target = source.val[index]
        boxes, labels = target["detect"]["boxes"], target["detect"]["labels"]
        mask = target["segment"]
        inside = torch.zeros_like(mask, dtype=torch.bool)
        for box, label in zip(boxes.long().tolist(), labels.tolist()):
            region = mask[box[1]:box[3], box[0]:box[2]]
            assert set(region.unique().tolist()) <= {0, label + 1}
            assert (region == label + 1).sum() > 0
            inside[box[1]:box[3], box[0]:box[2]] = True
        assert (mask[~inside] == 0).all()  # no digit pixel outside a box
        ink = (image[0] * 255).round() >= 85
        assert torch.equal(ink, mask > 0)  # the mask is the ink of the rendered canvas
        assert int(target["classify"]) == len(labels)
        assert target["labels"].tolist() == [float(d in labels.tolist()) for d in range(10)]
        assert torch.equal(canvases.mask(index), mask)
    images, batch = multi_target_collate([source.val[0], source.val[1]])
    assert images.shape == (2, 1, 64, 64) and isinstance(batch["detect"], list)
    assert batch["segment"].shape == (2, 64, 64) and batch["classify"].shape == (2,)


def test_augmentation_moves_mask_boxes_and_image_together():
    source = multihead_view(get_source("digits-detect", image_size=64, num_train=16, num_val=8),
                            ["segment", "detect"])
    torch.manual_seed(3)
    for index in range(6):
        image, target = source.train[index]
        mask = target["segment"]
        valid = mask != IGNORE
        digit = (mask > 0) & valid
        assert digit.any()
        ink = image[0][digit]
        assert float(ink.mean()) > 0.45  # digit pixels stay on ink after the shift
        assert float(image[0][(mask == 0)].mean()) < 0.1  # background stays dark
        for box in target["detect"]["boxes"].long().tolist():
            region = digit[max(box[1], 0):box[3], max(box[0], 0):box[2]]
            assert region.any()  # each moved box still holds its moved digit


def test_segmentation_scores_on_a_known_case():
    truth = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 255, 255]])
    pred = torch.tensor([[0, 0, 1, 0], [0, 1, 1, 1], [2, 1, 0, 2]])
    matrix = confusion_matrix(pred, truth, 3)
    assert int(matrix.sum()) == 10  # the ignored pixels count nowhere
    scores = segmentation_scores(matrix)
    # class 0: tp 3, fp 1, fn 1 -> 3/5; class 1: tp 3, fp 2, fn 1 -> 3/6; class 2: tp 1, fn 1 -> 1/2
    assert scores["miou"] == pytest.approx((3 / 5 + 3 / 6 + 1 / 2) / 3)
    assert scores["pixel_accuracy"] == pytest.approx(7 / 10)
    assert segmentation_scores(confusion_matrix(truth.clamp(max=2), truth.clamp(max=2), 3)
                               )["miou"] == 1.0


def test_label_map_matches_scikit_learn():
    generator = torch.Generator().manual_seed(0)
    truth = (torch.rand(40, 4, generator=generator) > 0.6).float()
    truth[:, 3] = 0  # a label without positives is left out, as COCO leaves out empty classes
    scores = torch.randn(40, 4, generator=generator) + 1.5 * truth
    result = multilabel_scores(scores, truth)
    expected = np.mean([average_precision_score(truth[:, k], scores[:, k]) for k in range(3)])
    assert result["label_map"] == pytest.approx(expected)
    assert result["label_accuracy"] == pytest.approx(float(((scores > 0) == (truth > 0)).float().mean()))


def test_coco128_masks_from_masks_yaml_line_up_with_the_boxes():
    root = shared_data() / "coco128"
    if not (root / "masks.yaml").is_file():
        pytest.skip("../shared/data/coco128 with masks.yaml is not here")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # coco128 lists two label files without images
        source = multihead_view(get_source(f"yolo:{root}", image_size=96), "detect,segment")
    spec = source.extra["tasks"]["segment"]
    person = spec["class_names"].index("person")
    inside = total = 0
    for index in range(len(source.test)):
        _, target = source.test[index]
        mask = target["segment"]
        if (mask == IGNORE).all():
            continue  # an image without a mask file
        assert int(mask.max()) < spec["classes"]
        covered = torch.zeros_like(mask, dtype=torch.bool)
        for box, label in zip(target["detect"]["boxes"].long().tolist(),
                              target["detect"]["labels"].tolist()):
            if label == 0:  # YOLO class 0 is person
                covered[box[1]:box[3] + 1, box[0]:box[2] + 1] = True
        inside += int((covered & (mask == person)).sum())
        total += int((mask == person).sum())
    assert total > 1000 and inside / total > 0.9  # person pixels lie in person boxes
