"""A small classifier trained on the bundled digits (real data), saved as a model folder that
records its data source: what `quantize`, `bench` and `export --precision int8` calibrate on."""
from __future__ import annotations

import pytest
import torch

from leannet.data import get_source
from leannet.data.loaders import make_loaders
from leannet.checkpoint import save
from leannet.train import fit
from leannet.train.build import build_for_source, remember_data


def train_digits_folder(folder, model_name: str, epochs: int):
    """`model_name` trained on the bundled 8 px digits with AdamW, saved as a model folder that
    records its data source (shared by the deploy tests' fixtures)."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    source = get_source("digits", image_size=8)
    model, task = build_for_source(source, model_name)
    remember_data(model, "digits", None)
    train_loader, val_loader = make_loaders(source, 64, seed=0)
    fit(model, train_loader, val_loader, task, epochs, optimizer="adamw", lr=0.01, seed=0,
        progress=False)
    return save(model.eval(), folder / "model")


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    """simple_cnn on 8 px digits, three AdamW epochs (about 90% accuracy), saved once."""
    return train_digits_folder(tmp_path_factory.mktemp("deploy"), "simple_cnn", 3)
