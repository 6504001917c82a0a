"""k-means anchors with distance 1 - IoU: recovers planted box shapes; more anchors, higher IoU."""
import pytest
import torch

from leannet.detect.anchors import kmeans_anchors, mean_iou
from leannet.errors import LeannetError

CENTRES = torch.tensor([[10.0, 10.0], [40.0, 15.0], [15.0, 60.0]])


def planted(n=300):
    g = torch.Generator().manual_seed(1)
    pick = torch.randint(0, 3, (n,), generator=g)
    return CENTRES[pick] * (1 + 0.05 * torch.randn(n, 2, generator=g))


def test_recovers_planted_shapes():
    anchors, iou = kmeans_anchors(planted(), 3)
    assert torch.allclose(anchors, CENTRES, rtol=0.06)  # sorted by area, like CENTRES
    assert iou > 0.9
    assert iou == pytest.approx(mean_iou(planted(), anchors))


def test_more_clusters_fit_better_and_runs_repeat():
    wh = planted()
    ious = [kmeans_anchors(wh, k)[1] for k in (1, 2, 3)]
    assert ious[0] < ious[1] < ious[2]
    a, _ = kmeans_anchors(wh, 3, seed=5)
    b, _ = kmeans_anchors(wh, 3, seed=5)
    assert torch.equal(a, b)


def test_bad_requests():
    with pytest.raises(LeannetError, match="at least k=4 boxes"):
        kmeans_anchors(CENTRES, 4)
    with pytest.raises(LeannetError, match="k must be at least 1"):
        kmeans_anchors(CENTRES, 0)
