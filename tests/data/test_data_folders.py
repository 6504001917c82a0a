"""imagefolder:PATH and cifar10: layouts, the decoded-image cache, corrupt and planted files."""
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from leannet.data import folders, get_source
from leannet.errors import LeannetError


def write_png(image: torch.Tensor, path: str) -> None:
    """Save a uint8 (3, H, W) tensor as a PNG file."""
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LEANNET_CACHE", str(tmp_path / "cache"))


def make_folder(root: Path, classes=("cat", "dog", "fox"), per_class=5, size=12, value=None):
    """Class subfolders of small RGB PNGs whose pixel value encodes the class."""
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = torch.full((3, size, size), value if value is not None else 40 * c + i,
                               dtype=torch.uint8)
            write_png(image, str(root / name / f"{i}.png"))
    return root


def test_class_folders_hold_out_test_then_validation_with_labels(tmp_path):
    root = make_folder(tmp_path / "pets")
    source = get_source(f"imagefolder:{root}")
    assert source.class_names == ["cat", "dog", "fox"]
    # 20% of each class is the test set, then one of each remaining class is validation
    assert (len(source.train), len(source.val), len(source.test), source.num_classes) == \
        (9, 3, 3, 3)
    assert source.in_channels == 3 and source.image_size == folders.DEFAULT_SIZE  # not the first image's
    seen = []
    for part in (source.train, source.val, source.test):
        assert torch.equal(part.images[:, 0, 0, 0] // 40, part.labels)  # pixels carry the class
        seen += part.images[:, 0, 0, 0].tolist()
    assert sorted(seen) == sorted(40 * c + i for c in range(3) for i in range(5))  # disjoint
    assert sorted(source.val.labels.tolist()) == [0, 1, 2]  # one of each class in val
    assert sorted(source.test.labels.tolist()) == [0, 1, 2]


def test_train_val_layout_and_resize(tmp_path):
    make_folder(tmp_path / "d" / "train", per_class=4)
    make_folder(tmp_path / "d" / "val", per_class=2)
    source = get_source(f"imagefolder:{tmp_path / 'd'}", image_size=8)
    # a lone held-out folder reports (test); validation is carved from train/
    assert (len(source.train), len(source.val), len(source.test), source.image_size) == \
        (9, 3, 6, 8)
    assert source.splits["test"] == "the val/ folder"
    make_folder(tmp_path / "d" / "test", per_class=1)
    both = get_source(f"imagefolder:{tmp_path / 'd'}", image_size=8)
    assert (len(both.train), len(both.val), len(both.test)) == (12, 6, 3)


def test_cache_avoids_decoding_and_tracks_changes(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "pets")
    first = get_source(f"imagefolder:{root}")
    assert len(list((tmp_path / "cache" / "data").glob("*.safetensors"))) == 1

    def no_decode(*args, **kwargs):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(folders, "_decode", no_decode)
    second = get_source(f"imagefolder:{root}")
    assert torch.equal(first.train.images, second.train.images)
    monkeypatch.undo()
    os.environ["LEANNET_CACHE"] = str(tmp_path / "cache")
    write_png(torch.zeros((3, 12, 12), dtype=torch.uint8), str(root / "cat" / "new.png"))
    third = get_source(f"imagefolder:{root}")  # a new file means a new cache entry
    assert len(third.train) + len(third.val) + len(third.test) == 16
    target = root / "fox" / "0.png"
    write_png(torch.full((3, 12, 12), 250, dtype=torch.uint8), str(target))
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 10**9))
    fourth = get_source(f"imagefolder:{root}")  # rewritten in place: decoded again
    every = torch.cat([fourth.train.images, fourth.val.images, fourth.test.images])
    assert 250 in every[:, 0, 0, 0].tolist()


def test_corrupt_png_is_named(tmp_path):
    root = make_folder(tmp_path / "pets")
    (root / "dog" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    with pytest.raises(LeannetError, match=r"cannot decode image .*dog/3\.png"):
        get_source(f"imagefolder:{root}")


def test_missing_and_empty_roots(tmp_path):
    with pytest.raises(LeannetError, match="does not exist"):
        get_source(f"imagefolder:{tmp_path / 'nope'}")
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(LeannetError, match="holds no class subfolders with images"):
        get_source(f"imagefolder:{tmp_path / 'empty'}")
    with pytest.raises(LeannetError, match="unknown data source"):
        get_source("no-such-source")


def _cifar_batches(folder: Path, n: int = 4) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"labels": list(range(n))}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))


def test_cifar10_torchvision_batches_and_folder_layout(tmp_path):
    _cifar_batches(tmp_path / "tv" / "cifar-10-batches-py")
    source = get_source("cifar10", root=tmp_path / "tv")
    assert (len(source.train), len(source.val), len(source.test), source.in_channels) == \
        (16, 4, 4, 3)  # validation: one of each of the 4 labels
    assert source.test.labels.tolist() == [0, 1, 2, 3] and source.train.transform.flip
    make_folder(tmp_path / "f" / "train", classes=("airplane", "ship"), size=32)
    make_folder(tmp_path / "f" / "test", classes=("airplane", "ship"), per_class=2, size=32)
    folder_source = get_source("cifar10", root=tmp_path / "f")
    assert (len(folder_source.train), len(folder_source.val), len(folder_source.test)) == (8, 2, 4)


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_cifar10_planted_pickle_is_refused(tmp_path):
    _cifar_batches(tmp_path / "cifar-10-batches-py")
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({b"data": Exploit()}))
    with pytest.raises(LeannetError, match="refusing to load posix.system|refusing to load"):
        get_source("cifar10", root=tmp_path)
    assert not Path("pwned").exists()
