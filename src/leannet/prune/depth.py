"""Depth pruning: remove whole residual blocks (ResNet basic/bottleneck, MobileNetV2 inverted
residual) whose shortcut is the identity, for small networks where the per-layer overhead of a
runtime, not the MACs, sets the latency.

A block y = act(x + f(x)) with an identity shortcut becomes y = act(x): the block's final
activation (ReLU for ResNet blocks, nothing for inverted residuals, whose sum is linear). That is
exact when f(x) = 0 and close when f is small relative to x, so blocks are ranked by how much
their residual branch adds, ||f(x)|| / ||x|| on real inputs, and the smallest go first. Width
pruning cannot do this: it keeps at least one channel per layer, and every layer still costs a
kernel launch, its memory traffic and, in int8, its requantization.

`remove_blocks` records what it removed in the model's config as a depth plan,
{"depth": {"remove": [names]}}, among the channel plans and in order, so a saved model folder
replays it on load (`leannet.checkpoint.load`): the removed blocks own weights, so the folder's
safetensors only fit a model that lost them again.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from leannet.errors import LeannetError
from leannet.prune.plan import record_plan

DEPTH_KEY = "depth"


@dataclass
class Block:
    """A removable block: its module name and what replaces it (the activation after the sum)."""

    name: str
    branch: nn.Module  # f: the residual branch, whose output is added to the input
    after: nn.Module  # applied to the sum (Identity when the sum is linear)


def _identity_shortcut(module: nn.Module) -> bool:
    return isinstance(module, nn.Identity)


def as_block(name: str, module: nn.Module) -> Block | None:
    """The Block view of `module` when it is a residual block with an identity shortcut."""
    kind = type(module).__name__
    if kind == "InvertedResidual":
        if getattr(module, "use_residual", False) or getattr(module, "use_res_connect", False):
            branch = getattr(module, "conv", None)
            if isinstance(branch, nn.Module):
                return Block(name, branch, nn.Identity())
        return None
    if kind in ("BasicBlock", "Bottleneck"):
        shortcut = getattr(module, "shortcut", None)
        if shortcut is not None:  # leannet's blocks
            last = "relu2" if kind == "BasicBlock" else "relu3"
            ok = _identity_shortcut(shortcut)
        else:  # torchvision's: downsample None means identity, one shared ReLU
            last, ok = "relu", getattr(module, "downsample", 0) is None
        if ok and isinstance(getattr(module, last, None), nn.Module):
            return Block(name, _Branch(module, kind), _fresh(getattr(module, last)))
    return None


def _fresh(act: nn.Module) -> nn.Module:
    """A non-inplace copy of the block's activation (ReLU in place would write the input)."""
    return nn.ReLU() if isinstance(act, nn.ReLU) else act


class _Branch(nn.Module):
    """f(x) of a ResNet block: everything before `out + shortcut(x)`."""

    def __init__(self, block: nn.Module, kind: str) -> None:
        super().__init__()
        self.block, self.kind = block, kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b: Any = self.block  # leannet's or torchvision's block: attributes vary
        if hasattr(b, "relu1"):  # leannet
            out = b.relu1(b.bn1(b.conv1(x)))
            if self.kind == "Bottleneck":
                out = b.relu2(b.bn2(b.conv2(out)))
                return b.bn3(b.conv3(out))
            return b.bn2(b.conv2(out))
        relu = nn.functional.relu  # torchvision's blocks share one in-place ReLU
        out = relu(b.bn1(b.conv1(x)))
        if self.kind == "Bottleneck":
            out = relu(b.bn2(b.conv2(out)))
            return b.bn3(b.conv3(out))
        return b.bn2(b.conv2(out))


def removable_blocks(model: nn.Module) -> list[Block]:
    """Every residual block of `model` with an identity shortcut, in module order."""
    found = []
    for name, module in model.named_modules():
        block = as_block(name, module)
        if block is not None and name:
            found.append(block)
    return found


def block_scores(model: nn.Module, inputs: Iterable[Any]) -> dict[str, float]:
    """||f(x)|| / ||x|| of every removable block, summed over batches of real `inputs`: how
    much each residual branch adds to what passes through it (small: cheap to remove)."""
    blocks = removable_blocks(model)
    if not blocks:
        raise LeannetError(f"{type(model).__name__} has no residual block with an identity "
                           "shortcut; depth pruning needs one")
    branch_norm = {b.name: 0.0 for b in blocks}
    input_norm = {b.name: 0.0 for b in blocks}
    modules = dict(model.named_modules())
    hooks = []
    for b in blocks:
        def hook(module, args, output, b=b):
            x = args[0]
            branch_norm[b.name] += float(b.branch(x).norm())
            input_norm[b.name] += float(x.norm())
        hooks.append(modules[b.name].register_forward_hook(hook))
    was_training = model.training
    model.eval()
    seen = 0
    try:
        with torch.no_grad():
            for batch in inputs:
                model(batch)
                seen += 1
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    if seen == 0:
        raise LeannetError("depth pruning needs at least one batch of inputs to rank blocks")
    return {name: branch_norm[name] / max(input_norm[name], 1e-12) for name in branch_norm}


def plan_depth(model: nn.Module, inputs: Iterable[Any], blocks: int) -> list[str]:
    """The `blocks` removable blocks whose residual branch adds least, by name."""
    if not isinstance(blocks, int) or blocks < 1:
        raise LeannetError(f"blocks={blocks!r}: remove at least one block")
    scores = block_scores(model, inputs)
    if blocks > len(scores):
        raise LeannetError(f"blocks={blocks}: {type(model).__name__} has only {len(scores)} "
                           "removable blocks (residual blocks with an identity shortcut)")
    return sorted(scores, key=lambda n: (scores[n], n))[:blocks]


def remove_blocks(model: nn.Module, names: Sequence[str]) -> nn.Module:
    """Replace each named block by its after-sum activation (in place) and record the depth
    plan in the model's config (a leannet-built model), so save/load replays it; returns
    `model`."""
    found = {b.name: b for b in removable_blocks(model)}
    unknown = [n for n in names if n not in found]
    if unknown or len(set(names)) != len(names):
        raise LeannetError(f"cannot remove {unknown or list(names)}: not residual blocks with an "
                           f"identity shortcut, or named twice (removable: "
                           f"{', '.join(found) or 'none'})")
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, found[name].after)
    if names:
        record_plan(model, depth_plan(names))
    return model


def depth_plan(names: Sequence[str]) -> dict[str, Any]:
    """The JSON form of a depth step: the blocks removed, by module name."""
    return {DEPTH_KEY: {"remove": [str(n) for n in names]}}


def depth_plan_blocks(plan: Any) -> list[str] | None:
    """The block names of a depth plan (checked), or None when `plan` is not one."""
    if not isinstance(plan, dict) or DEPTH_KEY not in plan:
        return None
    names = plan[DEPTH_KEY].get("remove") if isinstance(plan[DEPTH_KEY], dict) else None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise LeannetError("a depth plan needs a non-empty 'remove' list of block names, got "
                           f"{plan[DEPTH_KEY]!r}")
    return names
