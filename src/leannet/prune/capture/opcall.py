"""OpCall: one traced call (a function, a method or a leaf module) as every label handler sees it.

Handlers get one record instead of seven positional parameters, so module rules and tensor-op
handlers share one signature: `handler(call) -> label of the output`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import fx

from leannet.prune.capture.labels import constant, tree_leaves, tree_map


@dataclass
class OpCall:
    """A node's concrete arguments, their channel labels and the concrete output."""

    ctx: Any                 # the labelling context (graph._Context): union-find, members, layers
    node: fx.Node
    args: tuple
    kwargs: dict
    largs: tuple
    lkwargs: dict
    value: Any

    @property
    def x(self) -> Any:
        """The first argument (a module's input)."""
        return self.args[0]

    @property
    def label(self) -> Any:
        """The first argument's label."""
        return self.largs[0]

    @property
    def name(self) -> str:
        """The called module's qualified name (call_module nodes)."""
        return str(self.node.target)

    @property
    def module(self) -> Any:  # a module of the rule's types: its attributes vary by type
        """The called module (call_module nodes)."""
        return self.ctx.modules[self.node.target]

    def only(self, x: Any, label: Any) -> "OpCall":
        """The same call seen as a unary op on one tensor (module rules reuse tensor-op
        handlers this way)."""
        return OpCall(self.ctx, self.node, (x,), {}, (label,), {}, self.value)

    def with_label(self, label: Any) -> "OpCall":
        """The same call with the first argument's label replaced."""
        return OpCall(self.ctx, self.node, self.args, self.kwargs, (label,) + tuple(self.largs[1:]),
                      self.lkwargs, self.value)

    def unknown(self, why: str = "is an op leannet can't follow") -> Any:
        """An op we can't follow: protect every channel it touches (remembering why); its
        outputs are fixed."""
        ctx = self.ctx
        for label in tree_leaves(self.largs) + tree_leaves(self.lkwargs):
            if isinstance(label, torch.Tensor):
                ctx.protect(label.numpy(), self.node, why)
        return tree_map(lambda v: constant(ctx.uf, v.dim(), ctx.const_owner(self.node))
                        if isinstance(v, torch.Tensor) else None, self.value)
