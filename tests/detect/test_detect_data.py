"""digits-detect (determinism, exact boxes), YOLO-layout folders (parsing, errors, warnings),
box-aware augmentation and batching."""
import warnings
from pathlib import Path

import pytest
import torch

from leannet.data import get_source
from leannet.data.box_augment import box_augment, detection_collate
from leannet.data.images import write_image
from leannet.errors import LeannetError
from tests.helpers import shared_data

COCO128 = shared_data() / "coco128"


@pytest.fixture(scope="module")
def digits():
    return get_source("digits-detect", image_size=64, num_train=16, num_val=8, augment=False)


def test_digits_detect_is_deterministic_by_seed(digits):
    again = get_source("digits-detect", image_size=64, num_train=16, num_val=8, augment=False)
    other = get_source("digits-detect", image_size=64, num_train=16, num_val=8, seed=1,
                       augment=False)
    for i in (0, 5):
        (a, ta), (b, tb), (c, _) = digits.train[i], again.train[i], other.train[i]
        assert torch.equal(a, b) and torch.equal(ta["boxes"], tb["boxes"])
        assert not torch.equal(a, c)
    assert digits.task == "detect" and digits.num_classes == 10 and digits.in_channels == 1
    assert digits.extra["count_classes"] == 5


def test_digits_detect_boxes_are_exact(digits):
    for index in range(8):
        canvas, target = digits.val.render(index)
        ink = canvas[0] > 0
        inside = torch.zeros_like(ink)
        assert 1 <= len(target["labels"]) <= 4
        for x1, y1, x2, y2 in target["boxes"].long().tolist():
            inside[y1:y2, x1:x2] = True
            # the digit's tight crop fills its box: ink on all four edges
            assert ink[y1, x1:x2].any() and ink[y2 - 1, x1:x2].any()
            assert ink[y1:y2, x1].any() and ink[y1:y2, x2 - 1].any()
        assert not (ink & ~inside).any()  # no ink outside the boxes
    wh = digits.train.box_sizes()
    assert wh.shape[1] == 2 and (wh >= 4).all()


def test_box_augment_moves_boxes_with_pixels():
    torch.manual_seed(0)
    image = torch.zeros(3, 64, 64, dtype=torch.uint8)
    image[:, 10:30, 20:44] = 255
    target = {"boxes": torch.tensor([[20.0, 10.0, 44.0, 30.0]]), "labels": torch.tensor([3])}
    augment = box_augment(flip=True, jitter=0.0)
    for _ in range(5):
        out, moved = augment(image, target)
        ys, xs = torch.nonzero(out[0] > 127, as_tuple=True)
        found = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
        assert moved["labels"].tolist() == [3]
        assert torch.allclose(moved["boxes"][0], found, atol=1.5)


def test_collate_keeps_box_lists(digits):
    images, targets = detection_collate([digits.train[i] for i in range(4)])
    assert images.shape == (4, 1, 64, 64) and images.dtype == torch.float32
    assert images.max() <= 1.0 and len(targets) == 4
    assert all(t["boxes"].shape[1] == 4 and t["labels"].dtype == torch.int64 for t in targets)


def make_yolo(root: Path, labels: dict[str, str], orphan: bool = False) -> Path:
    """A tiny YOLO-layout dataset: 48x32 images, data.yaml with three names and three splits."""
    for split in ("train", "val", "test"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for name, text in labels.items():
            write_image(root / "images" / split / f"{name}.png",
                        torch.full((3, 32, 48), 90, dtype=torch.uint8))
            if text is not None:
                (root / "labels" / split / f"{name}.txt").write_text(text)
    if orphan:
        (root / "labels" / "train" / "ghost.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\n"
                                    "test: images/test\nnames:\n  0: cat\n  1: dog\n  2: bird\n")
    return root


def test_yolo_folder_reads_boxes_backgrounds_and_warns_on_orphans(tmp_path):
    make_yolo(tmp_path, {"a": "1 0.5 0.5 0.5 0.25\n\n0 0.25 0.75 0.1 0.2\n", "b": None},
              orphan=True)
    with pytest.warns(UserWarning, match="1 label file"):
        source = get_source(f"yolo:{tmp_path}", image_size=64, augment=False)
    assert source.class_names == ["cat", "dog", "bird"] and source.num_classes == 3
    assert len(source.train) == 2 and source.task == "detect"
    image, target = source.train[0]
    assert image.shape == (3, 64, 64)
    assert target["labels"].tolist() == [1, 0]
    assert torch.allclose(target["boxes"], torch.tensor([[16.0, 24.0, 48.0, 40.0],
                                                         [12.8, 41.6, 19.2, 54.4]]))
    assert len(source.train[1][1]["labels"]) == 0  # background image
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        via_yaml = get_source(f"yolo:{tmp_path / 'data.yaml'}", image_size=64)
        bare_yaml = get_source(str(tmp_path / "data.yaml"), image_size=64)  # as YOLO tools take it
    assert len(via_yaml.val) == 2
    assert bare_yaml.task == "detect" and len(bare_yaml.train) == len(via_yaml.train)


@pytest.mark.parametrize("text,message", [
    ("0 0.5 0.5 0.1\n", r"a\.txt:1: expected 5 fields"),
    ("0 0.5 0.5 0.1 0.1\n1 0.5 1.2 0.1 0.1\n", r"a\.txt:2: coordinates must be normalised"),
    ("3 0.5 0.5 0.1 0.1\n", r"a\.txt:1: class id 3 is not one of the 3 names"),
    ("x 0.5 0.5 0.1 0.1\n", r"a\.txt:1: expected numbers"),
])
def test_malformed_labels_name_file_and_line(tmp_path, text, message):
    make_yolo(tmp_path, {"a": text})
    with pytest.raises(LeannetError, match=message):
        get_source(f"yolo:{tmp_path}")


def test_missing_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(LeannetError, match="data.yaml"):
        get_source(f"yolo:{tmp_path}")
    with pytest.raises(LeannetError, match="multiple of 32"):
        get_source("digits-detect", image_size=50)


@pytest.mark.skipif(not COCO128.is_dir(), reason="coco128 not present")
def test_coco128_loads_with_its_quirks():
    with pytest.warns(UserWarning, match="2 label file"):
        source = get_source(f"yolo:{COCO128}", image_size=128, augment=False)
    assert source.num_classes == 80 and source.class_names[0] == "person"
    # val2017 is the lone held-out folder, so it is the test set; validation is carved from train
    empty = sum(len(rows) == 0 for rows in source.train.rows + source.val.rows)
    assert (len(source.train), len(source.val), len(source.test)) == (115, 13, 128) and empty == 2
    image, target = source.test[0]
    assert image.shape == (3, 128, 128) and len(target["labels"]) > 0
