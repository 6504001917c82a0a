"""Devices the scale tests run on: the CPU always, CUDA when this machine has a GPU."""
import pytest
import torch

DEVICES = [pytest.param("cpu", id="cpu"),
           pytest.param("cuda", id="cuda", marks=pytest.mark.skipif(
               not torch.cuda.is_available(), reason="no CUDA GPU on this machine"))]
