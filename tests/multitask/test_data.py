"""Multi-task data: the MultiMNIST recipe pixel by pixel, determinism, MNIST files, CSV folders."""
import csv

import numpy as np
import pytest
import torch
from PIL import Image

from leannet.data import get_source
from leannet.data.multidigits import overlay
from leannet.errors import LeannetError
from tests.helpers import shared_data

MNIST = shared_data() / "mnist"


def test_overlay_places_digits_and_takes_the_max_in_the_overlap():
    left = np.zeros((1, 28, 28), np.uint8)
    right = np.zeros((1, 28, 28), np.uint8)
    left[0, 0, 0], left[0, 27, 27], left[0, 10, 12] = 11, 22, 50
    right[0, 1, 1], right[0, 26, 26], right[0, 4, 6] = 33, 44, 200
    # canvas (36 x 36): left at [0:28, 0:28], right at [6:34, 6:34]; left (10, 12) meets right (4, 6)
    canvas = np.zeros((36, 36), np.uint8)
    canvas[0, 0], canvas[27, 27], canvas[7, 7], canvas[32, 32] = 11, 22, 33, 44
    canvas[10, 12] = 200
    expected = np.asarray(Image.fromarray(canvas).resize((28, 28), Image.NEAREST))
    assert np.array_equal(overlay(left, right)[0], expected)
    # nearest resize keeps canvas pixel floor((i + 0.5) * 36 / 28): (7, 7) -> (5, 5), (32, 32) -> (25, 25)
    out = overlay(left, right)[0]
    assert out[0, 0] == 11 and out[25, 25] == 44 and out[8, 9] == 200
    assert out[5, 5] == 33 and out[21, 21] == 22


def test_overlay_equals_pil_on_random_digits():
    rng = np.random.default_rng(0)
    left, right = (rng.integers(0, 256, (3, 28, 28), dtype=np.uint8) for _ in range(2))
    for i in range(3):
        canvas = np.zeros((36, 36), np.uint8)
        canvas[:28, :28] = left[i]
        canvas[6:34, 6:34] = np.maximum(canvas[6:34, 6:34], right[i])
        expected = np.asarray(Image.fromarray(canvas).resize((28, 28), Image.NEAREST))
        assert np.array_equal(overlay(left[i:i + 1], right[i:i + 1])[0], expected)


def test_multi_digits_is_deterministic_given_a_seed():
    a, b, c = get_source("multi-digits"), get_source("multi-digits"), get_source("multi-digits",
                                                                                   seed=1)
    assert a.task == "multitask" and a.extra["tasks"] == {"left": 10, "right": 10}
    assert (len(a.train), len(a.val), len(a.test), a.in_channels, a.image_size) == \
        (1295, 142, 360, 1, 28)  # test: the fixed 20%; validation carved from the rest
    assert torch.equal(a.train.images, b.train.images)
    assert torch.equal(a.train.labels["right"], b.train.labels["right"])
    assert torch.equal(a.train.labels["left"], c.train.labels["left"])  # left digits in order
    assert not torch.equal(a.train.labels["right"], c.train.labels["right"])  # partners differ
    x, y = a.train[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and set(y) == {"left", "right"}
    counts = torch.bincount(a.train.labels["right"], minlength=10)
    assert counts.min() > 80  # random partners cover every digit


@pytest.mark.skipif(not MNIST.is_dir(), reason="shared MNIST files absent")
def test_multi_mnist_from_idx_files(tmp_path):
    source = get_source("multi-mnist", root=MNIST, train_size=500, val_size=200)
    assert (len(source.train), len(source.val)) == (500, 200)
    again = get_source("multi-mnist", root=MNIST.parent, train_size=500, val_size=200)
    assert torch.equal(source.train.images, again.train.images)
    assert source.train.images.dtype == torch.uint8 and source.train.images.max() == 255
    with pytest.raises(LeannetError, match="no mnist IDX files in"):
        get_source("multi-mnist", root=tmp_path)


def _write_folder(tmp_path, n=30, split=False):
    """Digits as 8x8 PNGs with a CSV: file, digit, parity (and split)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    rows = []
    for i in range(n):
        name = f"img/{i:03d}.png"
        (tmp_path / "img").mkdir(exist_ok=True)
        Image.fromarray((bunch.images[i] * 15).astype(np.uint8)).save(tmp_path / name)
        row = {"file": name, "digit": str(bunch.target[i]),
               "parity": "even" if bunch.target[i] % 2 == 0 else "odd"}
        if split:
            row["split"] = "val" if i % 3 == 0 else "train"
        rows.append(row)
    path = tmp_path / "labels.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path, bunch.target[:n]


def test_multilabel_csv_folder(tmp_path):
    path, digits = _write_folder(tmp_path, split=True)
    source = get_source(f"multilabel-csv:{path}", image_size=16)
    assert source.task == "multitask"
    assert source.extra["tasks"] == {"digit": 10, "parity": 2}
    assert source.extra["class_names"]["parity"] == ["even", "odd"]
    # rows marked val (no test rows) are the test set; validation is carved from the train rows
    assert (len(source.train), len(source.val), len(source.test), source.in_channels) == \
        (18, 2, 10, 1)
    assert source.train.images.shape == (18, 1, 16, 16)
    test_rows = [i for i in range(30) if i % 3 == 0]
    assert source.test.labels["digit"].tolist() == [int(digits[i]) for i in test_rows]
    assert source.test.labels["parity"].tolist() == [int(digits[i] % 2) for i in test_rows]
    seen = torch.cat([source.train.labels["digit"], source.val.labels["digit"]])
    assert sorted(seen.tolist()) == sorted(int(digits[i]) for i in range(30) if i % 3)


def test_multilabel_csv_bad_input(tmp_path):
    path, _ = _write_folder(tmp_path, n=6)
    source = get_source(f"multilabel-csv:{path}")  # seeded 20% test, then validation
    assert (len(source.train), len(source.val), len(source.test), source.image_size) == (4, 1, 1, 8)
    (tmp_path / "nofile.csv").write_text("image,digit\na.png,1\n")
    with pytest.raises(LeannetError, match="no 'file' column"):
        get_source(f"multilabel-csv:{tmp_path / 'nofile.csv'}")
    (tmp_path / "nolabels.csv").write_text("file\nimg/000.png\n")
    with pytest.raises(LeannetError, match="no label columns"):
        get_source(f"multilabel-csv:{tmp_path / 'nolabels.csv'}")
    (tmp_path / "missing.csv").write_text("file,digit\nimg/000.png,1\nimg/zzz.png,2\n")
    with pytest.raises(LeannetError, match="cannot read image .*zzz.png"):
        get_source(f"multilabel-csv:{tmp_path / 'missing.csv'}")
    with pytest.raises(LeannetError, match="is not a file"):
        get_source(f"multilabel-csv:{tmp_path / 'absent.csv'}")
