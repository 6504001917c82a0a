"""mAP@0.5 and mAP@0.5:0.95 on hand-made cases with known answers; pycocotools and
faster-coco-eval agree."""
import pytest
import torch

from leannet.detect.metrics import mean_average_precision
from leannet.errors import LeannetError


def det(boxes, scores, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "scores": torch.tensor(scores, dtype=torch.float32),
            "labels": torch.tensor(labels, dtype=torch.long)}


def gt(boxes, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.long)}


BACKENDS = ["pycocotools", "faster_coco_eval"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_perfect_detections_score_one(backend):
    targets = [gt([[0, 0, 10, 10], [20, 20, 40, 50]], [0, 1]), gt([[5, 5, 30, 30]], [1])]
    preds = [det(t["boxes"].tolist(), [0.9] * len(t["labels"]), t["labels"].tolist())
             for t in targets]
    assert mean_average_precision(preds, targets, 2, backend) == {"map50": 1.0, "map": 1.0}


@pytest.mark.parametrize("backend", BACKENDS)
def test_known_answers(backend):
    # A missed class halves the mean: class 0 found exactly, class 1 never detected.
    targets = [gt([[0, 0, 10, 10], [50, 50, 60, 60]], [0, 1])]
    result = mean_average_precision([det([[0, 0, 10, 10]], [0.9], [0])], targets, 2, backend)
    assert result["map50"] == pytest.approx(0.5)
    # IoU 0.62 passes the thresholds 0.50, 0.55 and 0.60 of ten: mAP@0.5:0.95 = 0.3.
    target = [gt([[0, 0, 10, 10]], [0])]
    result = mean_average_precision([det([[0, 0, 10, 6.2]], [0.9], [0])], target, 1, backend)
    assert result == pytest.approx({"map50": 1.0, "map": 0.3})
    # A confident false positive ranked above the hit: precision 1/2 at full recall -> AP 0.5.
    preds = [det([[30, 30, 40, 40], [0, 0, 10, 10]], [0.9, 0.8], [0, 0])]
    assert mean_average_precision(preds, target, 1, backend)["map50"] == pytest.approx(0.5)
    # The right box with the wrong class finds nothing.
    wrong = mean_average_precision([det([[0, 0, 10, 10]], [0.9], [1])], target, 2, backend)
    assert wrong == {"map50": 0.0, "map": 0.0}


def test_backends_agree_on_a_messy_case():
    g = torch.Generator().manual_seed(0)
    targets, preds = [], []
    for _ in range(6):
        xy = torch.rand(4, 2, generator=g) * 60
        boxes = torch.cat([xy, xy + 8 + torch.rand(4, 2, generator=g) * 30], 1)
        labels = torch.randint(0, 3, (4,), generator=g)
        targets.append(gt(boxes.tolist(), labels.tolist()))
        noisy = boxes + torch.randn(4, 4, generator=g) * 3
        extra = torch.tensor([[10.0, 10, 30, 30]])
        preds.append(det(torch.cat([noisy, extra]).tolist(), torch.rand(5, generator=g).tolist(),
                         torch.cat([labels, torch.tensor([0])]).tolist()))
    a = mean_average_precision(preds, targets, 3, "pycocotools")
    b = mean_average_precision(preds, targets, 3, "faster_coco_eval")
    assert 0.1 < a["map"] < a["map50"] < 1.0
    assert a == pytest.approx(b, abs=1e-6)


def test_empty_and_bad_inputs():
    target = [gt([[0, 0, 10, 10]], [0])]
    assert mean_average_precision([det([], [], [])], target, 1) == {"map50": 0.0, "map": 0.0}
    with pytest.raises(LeannetError, match="backend"):
        mean_average_precision([det([], [], [])], target, 1, backend="torchmetrics")
    with pytest.raises(LeannetError, match="1 predictions for 2 images"):
        mean_average_precision([det([], [], [])], target * 2, 1)
