"""Image files <-> uint8 (C, H, W) tensors through Pillow (torchvision's codecs are deprecated).

Writes go through a temp file and a rename, so a failure never leaves half an image.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from leannet.errors import LeannetError
from leannet.files import atomic_write


def read_image(path: str | Path) -> Tensor:
    """An image file as uint8 RGB (3, H, W); missing or unreadable files give a LeannetError."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise LeannetError(f"image {path} does not exist")
    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as err:
        raise LeannetError(f"cannot decode image {path}: {err}") from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def write_image(path: str | Path, image: Tensor) -> Path:
    """Save a uint8 (1 or 3, H, W) tensor; the format follows the suffix (.png, .jpg)."""
    from PIL import Image

    path = Path(path)
    array = image.detach().cpu().to(torch.uint8).permute(1, 2, 0).numpy()
    picture = Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)
    return atomic_write(path, picture.save)
