"""Measurement: parameters, MACs against hand counts, file size, latency."""
import torch
from torch import nn

import leannet
from leannet.measure import count_macs, count_params, file_size, latency_ms, measure


def test_macs_match_a_hand_count():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.Flatten(),
                          nn.Linear(8 * 16 * 16, 10))
    conv = 8 * 3 * 3 * 3 * 16 * 16
    linear = 8 * 16 * 16 * 10
    assert count_macs(model, (1, 3, 16, 16)) == conv + linear
    assert count_macs(model, (2, 3, 16, 16)) == 2 * (conv + linear)
    assert count_params(model) == 8 * 27 + 8 * 256 * 10 + 10


def test_measure_reports_everything_and_restores_training_mode(tmp_path):
    model = leannet.create_model("resnet20", width_mult=0.5)
    model.train()
    folder = leannet.save(model, tmp_path / "m")
    result = measure(model, (1, 3, 32, 32), path=folder, runs=3)
    assert model.training
    assert result["params"] == count_params(model)
    assert result["size_bytes"] == file_size(folder) > 4 * result["params"]
    assert result["latency_ms"] > 0


def test_latency_is_a_positive_median():
    model = nn.Conv2d(3, 4, 3)
    assert latency_ms(model, torch.randn(1, 3, 8, 8), runs=5, warmup=1, threads=1) > 0
