"""Image folders that would hang, crash or exhaust memory give one clear line instead."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from leannet.data import folders, get_source
from leannet.errors import LeannetError


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LEANNET_CACHE", str(tmp_path / "cache"))


def two_classes(root, per_class=3, size=10):
    for c, name in enumerate(("a", "b")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.new("RGB", (size, size), (100 * c + i, 0, 0)).save(root / name / f"{i}.png")
    return root


def test_a_fifo_named_like_an_image_is_refused_not_read(tmp_path):
    root = two_classes(tmp_path / "d")
    os.mkfifo(root / "a" / "pipe.png")
    with pytest.raises(LeannetError, match="not a regular file"):
        get_source(f"imagefolder:{root}", image_size=8)


def test_a_dangling_link_is_named(tmp_path):
    root = two_classes(tmp_path / "d")
    (root / "b" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    with pytest.raises(LeannetError, match="gone.jpg is a broken link"):
        get_source(f"imagefolder:{root}", image_size=8)


def test_a_decompression_bomb_is_refused(tmp_path, monkeypatch):
    root = two_classes(tmp_path / "d")
    Image.new("L", (400, 300)).save(root / "a" / "big.png")  # tiny file, many pixels
    monkeypatch.setattr(folders, "MAX_PIXELS", 100_000)
    with pytest.raises(LeannetError, match="big.png.*decompression bomb"):
        get_source(f"imagefolder:{root}", image_size=8)


def test_one_class_is_not_a_classification_dataset(tmp_path):
    root = tmp_path / "d"
    (root / "only").mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (8, 8)).save(root / "only" / f"{i}.png")
    with pytest.raises(LeannetError, match="one class"):
        get_source(f"imagefolder:{root}", image_size=8)


def test_sixteen_bit_greyscale_keeps_its_contrast(tmp_path):
    root = tmp_path / "d"
    for c, name in enumerate(("a_dark", "b_bright")):  # class order is alphabetical
        (root / name).mkdir(parents=True)
        for i in range(3):
            value = 8000 if c == 0 else 60000  # PIL's own convert("L") clips both to 255
            Image.fromarray(np.full((8, 8), value, dtype=np.uint16)).save(root / name / f"{i}.png")
    source = get_source(f"imagefolder:{root}", image_size=8)
    images = torch.cat([source.train.images, source.val.images, source.test.images])
    labels = torch.cat([source.train.labels, source.val.labels, source.test.labels])
    dark = images[labels == 0].float().mean().item()
    bright = images[labels == 1].float().mean().item()
    assert dark == pytest.approx(8000 / 65535 * 255, abs=1)
    assert bright == pytest.approx(60000 / 65535 * 255, abs=1)


def test_cmyk_jpeg_and_extreme_aspect_ratio_decode_to_the_asked_size(tmp_path):
    root = two_classes(tmp_path / "d")
    Image.new("CMYK", (20, 20), (0, 255, 255, 0)).save(root / "a" / "cmyk.jpg")
    Image.new("RGB", (2000, 1), (0, 200, 0)).save(root / "b" / "strip.png")
    source = get_source(f"imagefolder:{root}", image_size=8)
    assert source.train.images.shape[1:] == (3, 8, 8)
    assert len(source.train) + len(source.val) + len(source.test) == 8


def test_a_set_too_large_to_decode_is_refused_before_decoding(tmp_path, monkeypatch):
    root = two_classes(tmp_path / "d")
    monkeypatch.setenv(folders.MEMORY_LIMIT_ENV, "0.000001")
    monkeypatch.setattr(folders, "_decode", lambda *a: pytest.fail("decoded before the check"))
    with pytest.raises(LeannetError, match="GB decoded, over the"):
        get_source(f"imagefolder:{root}", image_size=64)
