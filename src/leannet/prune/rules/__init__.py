"""Layer rules: one LayerRule per layer type (torch.nn, torchvision, and timm when installed).

    class MyNormRule(LayerRule):
        types = (MyNorm,)
        kinds = {"norm": MemberKind((("weight", 0), ("bias", 0)), "scale")}
        def label(self, call): ...

    Pruner(model, x, rules=[MyNormRule()])
"""
from leannet.prune.rules import timm_layers, torch_nn, torchvision_layers  # noqa: F401
from leannet.prune.rules.base import LayerRule, MemberKind, RuleSet, add_trace_hints, register, trace_hints

__all__ = ["LayerRule", "MemberKind", "RuleSet", "register", "add_trace_hints",
           "trace_hints"]
