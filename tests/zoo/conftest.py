"""Zoo tests: weight caches live in temporary folders, never in the user's ~/.cache."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture()
def torch_home(tmp_path, monkeypatch):
    """An empty TORCH_HOME: torch.hub's checkpoint cache is `<it>/hub/checkpoints`."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    return tmp_path / "torch_home" / "hub" / "checkpoints"


def randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random BatchNorm statistics and perturbed weights: a fresh model's outputs are nearly zero
    after many layers, which would make any two models look alike."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("running_var"):
                buffer.copy_(torch.rand(buffer.shape, generator=generator) + 0.5)
            elif name.endswith("running_mean"):
                buffer.copy_(torch.randn(buffer.shape, generator=generator) * 0.1)
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.05)
    return model.eval()
