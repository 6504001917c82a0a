"""mnist / fashion-mnist from IDX files: parsing, search places, and clear errors on bad files."""
import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from leannet.data import get_source
from leannet.data import idx
from leannet.errors import LeannetError
from tests.helpers import shared_data

SHARED = shared_data()


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    """Write a uint8 array in the IDX format (magic 0x0000080N, big-endian dims)."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def fake_mnist(folder: Path, n_train: int = 40, n_test: int = 20, gz: bool = True) -> dict:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
              "train-labels-idx1-ubyte": np.arange(n_train) % 10,
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
              "t10k-labels-idx1-ubyte": (np.arange(n_test) * 3) % 10}
    for name, array in arrays.items():
        write_idx(folder / name, array, gz)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_reads_fake_idx_files_exactly(tmp_path, gz):
    arrays = fake_mnist(tmp_path, gz=gz)
    source = get_source("mnist", root=tmp_path)
    # validation: one image of each of the 10 classes (10% of 4, at least one), carved from train
    assert (len(source.train), len(source.val), len(source.test), source.image_size) == \
        (30, 10, 20, 28)
    assert sorted(source.val.labels.tolist()) == list(range(10))
    carved = torch.cat([source.train.images, source.val.images])[:, 0]
    assert sorted(map(bytes, carved.numpy())) == sorted(
        map(bytes, arrays["train-images-idx3-ubyte"].astype(np.uint8)))  # nothing lost or added
    assert source.test.labels.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    assert "t10k" in source.splits["test"] and "stratified" in source.splits["val"]
    assert source.train.transform is not None and not source.train.transform.flip
    fashion = get_source("fashion-mnist", root=tmp_path)
    assert fashion.train.transform.flip and fashion.class_names[9] == "Ankle boot"


def test_finds_torchvision_raw_layout(tmp_path):
    fake_mnist(tmp_path / "FashionMNIST" / "raw", gz=False)
    assert len(get_source("fashion-mnist", root=tmp_path).train) == 30


def test_bad_magic_names_the_file(tmp_path):
    fake_mnist(tmp_path, gz=False)
    bad = tmp_path / "train-labels-idx1-ubyte"
    bad.write_bytes(b"\x00\x00\x09\x01" + bad.read_bytes()[4:])
    with pytest.raises(LeannetError, match="train-labels-idx1-ubyte has a bad magic number"):
        get_source("mnist", root=tmp_path)


def test_truncated_file_names_the_file(tmp_path):
    fake_mnist(tmp_path, gz=False)
    bad = tmp_path / "t10k-images-idx3-ubyte"
    bad.write_bytes(bad.read_bytes()[:-100])
    with pytest.raises(LeannetError, match="t10k-images-idx3-ubyte is truncated"):
        get_source("mnist", root=tmp_path)
    gz = tmp_path / "g"
    fake_mnist(gz, gz=True)
    broken = gz / "train-images-idx3-ubyte.gz"
    broken.write_bytes(broken.read_bytes()[:50])
    with pytest.raises(LeannetError, match="train-images-idx3-ubyte.gz"):
        get_source("mnist", root=gz)


def test_missing_or_empty_roots_and_nothing_found(tmp_path, monkeypatch):
    with pytest.raises(LeannetError, match="does not exist"):
        get_source("mnist", root=tmp_path / "nope")
    with pytest.raises(LeannetError, match="no mnist IDX files in"):
        get_source("mnist", root=tmp_path)
    monkeypatch.setenv("LEANNET_OFFLINE", "1")
    monkeypatch.setattr(idx, "standard_places", lambda name: [tmp_path / "std" / name])
    with pytest.raises(LeannetError) as err:
        get_source("fashion-mnist")
    message = str(err.value)
    assert "--data-root" in message and str(tmp_path / "std") in message and "download" in message
    assert "\n" not in message


def test_standard_place_is_used_without_root(tmp_path, monkeypatch):
    fake_mnist(tmp_path / "std" / "mnist")
    monkeypatch.setattr(idx, "standard_places", lambda name: [tmp_path / "std" / name])
    assert len(get_source("mnist").test) == 20


@pytest.mark.skipif(not (SHARED / "fashion-mnist").is_dir(), reason="shared data absent")
def test_real_fashion_mnist():
    source = get_source("fashion-mnist", root=SHARED / "fashion-mnist")
    assert (len(source.train), len(source.val), len(source.test)) == (54000, 6000, 10000)
    assert torch.bincount(source.test.labels).tolist() == [1000] * 10
    assert torch.bincount(source.val.labels).tolist() == [600] * 10  # stratified 10% of train
    assert 0.27 < source.extra["mean"][0] < 0.30  # Fashion-MNIST's known mean, 0.286
