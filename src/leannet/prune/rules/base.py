"""LayerRule: everything leannet knows about one layer type, in one place, and the registry.

A rule says how the layer labels channels (`label`), which slices of which tensors belong to a
channel (`kinds`), how to refresh the layer's size attributes after slicing (`resize`), which
of its slices are scored as filters, inputs or norm scales (a kind's `role`), whether its output
is an activation (where data criteria observe channels) and, from inside `label`, how it counts in
MACs and parameters (`ctx.add_layer`). Graph capture, surgery, criteria and cost ask the rules;
adding a layer type is one rule and one `register` call.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Iterable

from torch import nn

from leannet.errors import LeannetError
from leannet.prune.capture.opcall import OpCall

ROLES = ("filter", "input", "scale", "param")
# "exact": LayerNorm-like channels are protected; "prune": they are pruned, and the output change
# is measured instead of proven zero.
LAYER_NORM_POLICIES = ("exact", "prune")


@dataclass(frozen=True)
class MemberKind:
    """One kind of slice a layer owns: (tensor name, dim) pairs and how criteria read it.

    role: "filter" (a producer's output filter: scored by weight criteria), "input" (a
    consumer's input slice: scored only when a group has no filter), "scale" (a norm's per-channel
    scale: bn_scale), "param" (any other per-channel parameter)."""

    slices: tuple[tuple[str, int], ...]
    role: str = "param"
    exact: bool = True  # False: removing a channel changes the others (a pruned LayerNorm)

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise LeannetError(f"member role {self.role!r} must be one of {', '.join(ROLES)}")


class LayerRule:
    """Base class of layer rules. Subclasses set `types` and `kinds` and implement `label`."""

    types: ClassVar[tuple[type, ...]] = ()
    kinds: ClassVar[dict[str, MemberKind]] = {}
    # Trace the layer as one call (not into its forward). Set for types fx would trace into
    # (anything outside torch.nn) whose rule understands the whole layer.
    leaf: ClassVar[bool] = False
    # Attributes surgery snapshots and `resize` may change.
    attributes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, types: Iterable[type] | None = None) -> None:
        """`types` overrides the class's layer types (one rule class, several registrations)."""
        if types is not None:
            self.types = tuple(types)  # type: ignore[misc]

    def label(self, call: OpCall) -> Any:
        """The output's channel label; records members and cost on `call.ctx`."""
        return call.unknown()

    def slices(self, kind: str, param: str | None, dim: int) -> tuple[tuple[str, int], ...]:
        """(tensor name, dim) pairs a member of this kind cuts."""
        return self.kinds[kind].slices

    def role(self, kind: str) -> str:
        return self.kinds[kind].role

    def exact(self, kind: str) -> bool:
        return self.kinds[kind].exact

    def resize(self, module: nn.Module, kinds: set[str]) -> None:
        """Refresh size attributes after the member tensors of `kinds` were sliced."""

    def is_activation(self, module: nn.Module) -> bool:
        """Whether the layer's output is an activation (where data criteria observe)."""
        return False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(t.__name__ for t in self.types)})"


_RULES: dict[type, LayerRule] = {}


def register(rule: LayerRule | type[LayerRule]) -> LayerRule:
    """Make `rule` the built-in rule of its types (usable as a class decorator)."""
    instance = rule() if isinstance(rule, type) else rule
    if not instance.types:
        raise LeannetError(f"{instance!r} names no layer types")
    for t in instance.types:
        _RULES[t] = instance
    return rule  # type: ignore[return-value]


class RuleSet:
    """The built-in rules plus a user's own (which win), looked up by a module's type and its
    base classes (nearest first)."""

    def __init__(self, extra: Iterable[LayerRule | type[LayerRule]] = (),
                 layer_norm: str = "exact") -> None:
        if layer_norm not in LAYER_NORM_POLICIES:
            raise LeannetError(f"layer_norm={layer_norm!r} must be one of "
                               f"{', '.join(LAYER_NORM_POLICIES)}")
        self.layer_norm = layer_norm
        self.extra: dict[type, LayerRule] = {}
        for rule in extra:
            instance = rule() if isinstance(rule, type) else rule
            if not isinstance(instance, LayerRule) or not instance.types:
                raise LeannetError(f"rules must be LayerRule instances or classes naming their "
                                   f"layer types; got {rule!r}")
            for t in instance.types:
                self.extra[t] = instance

    def find_type(self, cls: type) -> LayerRule | None:
        """The rule a module of this type would get (None when none applies)."""
        for base in cls.__mro__:
            rule = self.extra.get(base) or _RULES.get(base)
            if rule is not None:
                return rule
        return None

    def find(self, module: nn.Module) -> LayerRule | None:
        """The rule of the module's type or of its nearest base class."""
        return self.find_type(type(module))

    def is_leaf(self, module: nn.Module) -> bool:
        """Whether tracing should stop at this module: a rule registered for its exact type
        asks for it (a subclass may change the forward, so it is traced into)."""
        rule = self.extra.get(type(module)) or _RULES.get(type(module))
        return rule is not None and (rule.leaf or type(module) in self.extra)


_LEAF_TYPES: set[type] = set()
_AUTOWRAP: set[Any] = set()


def add_trace_hints(leaf_types: Iterable[type] = (), functions: Iterable[Any] = ()) -> None:
    """Types fx should not trace into (without a rule their channels are protected) and
    functions it should record as single calls instead of tracing (a zoo's own list of what
    symbolic tracing can't follow)."""
    _LEAF_TYPES.update(leaf_types)
    _AUTOWRAP.update(functions)


def trace_hints() -> tuple[tuple[type, ...], tuple[Any, ...]]:
    """(leaf types, autowrapped functions) registered by the zoo rule modules."""
    return tuple(_LEAF_TYPES), tuple(_AUTOWRAP)
