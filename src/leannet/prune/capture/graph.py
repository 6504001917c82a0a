"""Trace a model once with torch.fx and derive its ChannelGroups.

The traced graph is run on the example inputs by an interpreter that computes, beside each real
value, its channel label (see labels.py). Ops union the atoms that must go together; what ends
up in one class is one removable channel; classes that share producers form a ChannelGroup.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import torch
from torch import fx, nn

from leannet.errors import LeannetError
from leannet.prune.capture import view_ops  # noqa: F401  (registers the view handlers)
from leannet.prune.capture.labels import canon, constant, fresh, tree_leaves, tree_map
from leannet.prune.capture.opcall import OpCall
from leannet.prune.capture.tensor_ops import FUNCTIONS, METHODS
from leannet.prune.capture.trace import trace
from leannet.prune.capture.unionfind import UnionFind
from leannet.prune.rules import LayerRule, MemberKind, RuleSet


class ParameterRule(LayerRule):
    """A parameter used directly in the graph (a layer scale): its one non-trivial dimension
    follows the channel."""

    kinds = {"param": MemberKind((), "param")}

    def slices(self, kind: str, param: str | None, dim: int) -> tuple[tuple[str, int], ...]:
        return ((str(param), dim),)


PARAMETER = ParameterRule()


@dataclass
class Member:
    """One slice that loses channels: module `module`'s tensors of `kind` (as its rule defines
    them), index i -> atoms[i]."""

    module: str
    kind: str
    atoms: np.ndarray
    rule: LayerRule = PARAMETER
    param: str | None = None  # for kind "param": the attribute name
    dim: int = 0              # for kind "param": the sliced dimension
    feature: tuple[int, np.ndarray] | None = None  # inputs' (dim, atoms) for calibration hooks

    @property
    def slices(self) -> tuple[tuple[str, int], ...]:
        """(tensor name, dim) pairs this member cuts."""
        return self.rule.slices(self.kind, self.param, self.dim)

    @property
    def role(self) -> str:
        """"filter", "input", "scale" or "param" (see rules.MemberKind)."""
        return self.rule.role(self.kind)

    @property
    def exact(self) -> bool:
        """Whether removing one of its channels leaves the others unchanged."""
        return self.rule.exact(self.kind)

    @property
    def key(self) -> str:
        return f"{self.module}:{self.kind}:{self.param or ''}"


@dataclass
class Protection:
    """Why some atoms are protected: where (a module, an op, the outputs) and what it does."""

    where: str       # "module 'blocks.0.ln' (LayerNorm)", "op cat (node cat_3)", ...
    kind: str        # what to aggregate by: a layer type or an op name
    why: str
    atoms: np.ndarray
    block: type | None = None  # for an op: the type of the module that called it

@dataclass
class ChannelGroup:
    """Channels that are removed together across producers and consumers, in a fixed order."""

    name: str
    channels: np.ndarray          # class root of each channel
    protected: np.ndarray         # bool per channel
    members: list[Member] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.channels)

    @property
    def prunable(self) -> int:
        """How many channels could go (not protected)."""
        return int((~self.protected).sum())

    def __repr__(self) -> str:
        return (f"ChannelGroup({self.name!r}, channels={self.size}, prunable={self.prunable}, "
                f"members={sorted({m.module for m in self.members})})")


@dataclass
class Layer:
    """A cost-bearing module call: MACs and weights scale with kept out x kept in."""

    module: str
    out_key: str | None
    in_key: str | None
    macs: int
    weight: int
    bias: bool
    full_out: int
    full_in: int
    params_per_channel: int = 0


class _Context:
    """Shared state of one labelling run: the union-find, members, cost-bearing layers, and why
    each protected atom is protected."""

    def __init__(self, gm: fx.GraphModule, rules: RuleSet) -> None:
        self.uf = UnionFind()
        self.gm = gm
        self.rules = rules
        self.modules = dict(gm.named_modules())
        self.members: dict[str, Member] = {}
        self.layers: list[Layer] = []
        self.param_owners: dict[str, int] = {}
        self.points: dict[str, tuple[int, np.ndarray]] = {}  # activation node -> (dim, atoms)
        self.protections: list[Protection] = []

    def new_owner(self, name: str) -> int:
        return self.uf.new_owner(name)

    def const_owner(self, node: fx.Node) -> int:
        return self.uf.new_owner(f"~{node.name}")

    def protect(self, atoms: np.ndarray, node: fx.Node | None, why: str) -> None:
        """Protect atoms, remembering which node did it and why (for UnreachableTarget)."""
        atoms = np.asarray(atoms, dtype=np.int64).ravel()
        self.uf.protect(atoms)
        where, kind, block = describe(node, self.modules) if node is not None else ("", "", None)
        self.protections.append(Protection(where, kind, why, atoms, block))

    def add_member(self, rule: LayerRule, module: str, kind: str, atoms: np.ndarray,
                   param: str | None = None, dim: int = 0, feature: tuple | None = None) -> None:
        """Record a slice; a module called twice shares weights, so its atoms are unioned."""
        member = Member(module, kind, np.asarray(atoms, dtype=np.int64), rule, param, dim, feature)
        old = self.members.get(member.key)
        if old is None:
            self.members[member.key] = member
        elif len(old.atoms) == len(member.atoms):
            self.uf.union_arrays(old.atoms, member.atoms)
        else:
            self.uf.protect(old.atoms)
            self.uf.protect(member.atoms)

    def add_layer(self, module: str, out_kind: str | None, in_kind: str | None, macs: int = 0,
                  weight: int = 0, params_per_channel: int = 0, member: str | None = None) -> None:
        """Record the cost of one call of a conv/linear (or the parameters of a norm)."""
        m = self.modules[module]
        out_key = f"{module}:{out_kind or member}:"
        in_key = f"{module}:{in_kind}:" if in_kind else None
        full_out = len(self.members[out_key].atoms)
        full_in = len(self.members[in_key].atoms) if in_key else 1
        self.layers.append(Layer(module, out_key, in_key, macs, weight,
                                 getattr(m, "bias", None) is not None, full_out, full_in,
                                 params_per_channel))

    def get_attr(self, node: fx.Node, value: Any) -> Any:
        """A parameter used directly: its one non-trivial dim becomes a member (layer scale)."""
        if not isinstance(value, torch.Tensor) or value.dim() == 0 or value.numel() == 1:
            return None
        if not value.is_floating_point():  # an index or a mask: positions, not channels
            return constant(self.uf, value.dim(), self.const_owner(node))
        sizes = [d for d in range(value.dim()) if value.shape[d] > 1]
        if len(sizes) != 1:
            return constant(self.uf, value.dim(), self.const_owner(node))
        target = str(node.target)  # get_attr: a dotted parameter name
        module, _, attr = target.rpartition(".")
        label, atoms = fresh_param(self, target, value, sizes[0])
        self.add_member(PARAMETER, module, "param", atoms, param=attr, dim=sizes[0])
        return label


def describe(node: fx.Node, modules: dict[str, nn.Module]) -> tuple[str, str, type | None]:
    """(where, kind, block type) of a node for messages: the module and its type, or the op and
    the module it was called from."""
    if node.op == "call_module":
        module = type(modules[str(node.target)])
        return f"module {node.target!r} ({module.__name__})", module.__name__, None
    if node.op == "output":
        return "the model's outputs", "output", None
    name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__",
                                                                    str(node.target))
    stack = list(node.meta.get("nn_module_stack", {}).values())
    inside = ""
    if stack:
        path, cls = stack[-1] if isinstance(stack[-1], tuple) else (stack[-1], None)
        cls_name = getattr(cls, "__name__", str(cls).rsplit(".", 1)[-1].strip("'>"))
        inside = f" inside {path!r} ({cls_name})"
        return f"op {name}{inside}", f"{name} in {cls_name}", cls if isinstance(cls, type) else None
    return f"op {name} (node {node.name})", str(name), None


def fresh_param(ctx: _Context, target: str, value: torch.Tensor, dim: int):
    """Fresh atoms along a parameter's only non-trivial dimension (reused if read twice)."""
    if target not in ctx.param_owners:
        label, atoms = fresh(ctx.uf, value.dim(), dim, value.shape[dim], ctx.new_owner(target))
        ctx.param_owners[target] = atoms[0]
        return label, atoms
    start = ctx.param_owners[target]
    atoms = np.arange(start, start + value.shape[dim])
    shape = [1] * value.dim()
    shape[dim] = value.shape[dim]
    return torch.from_numpy(atoms.copy()).reshape(shape), atoms


class _Labeller(fx.Interpreter):
    """Runs the graph on real inputs and computes each node's channel label beside its value."""

    def __init__(self, gm: fx.GraphModule, ctx: _Context) -> None:
        super().__init__(gm, garbage_collect_values=True)
        self.ctx = ctx
        self.labels: dict[fx.Node, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        if n.op == "output":
            for label in tree_leaves(fx.node.map_arg(n.args, lambda a: self.labels[a])):
                if isinstance(label, torch.Tensor):
                    self.ctx.protect(label.numpy(), n, "keep every channel")
            return super().run_node(n)
        args, kwargs = self.fetch_args_kwargs_from_env(n)
        value = super().run_node(n)
        largs = fx.node.map_arg(n.args, lambda a: self.labels[a])
        lkwargs = fx.node.map_arg(n.kwargs, lambda a: self.labels[a])
        self.labels[n] = self._label(n, args, kwargs, largs, lkwargs, value)
        if _is_activation(n, self.ctx) and isinstance(self.labels[n], torch.Tensor):
            self._record_point(n, self.labels[n], value)
        return value

    def _record_point(self, n: fx.Node, label: torch.Tensor, value: torch.Tensor) -> None:
        """Remember an activation output whose one varying dim holds channels (for apoz...)."""
        label = canon(self.ctx.uf, label)
        dims = [d for d in range(label.dim()) if label.shape[d] > 1]
        if len(dims) == 1 and dims[0] > 0:
            self.ctx.points[n.name] = (dims[0], label.reshape(-1).numpy().copy())

    def _label(self, n, args, kwargs, largs, lkwargs, value) -> Any:
        ctx = self.ctx
        if n.op == "placeholder":
            return tree_map(lambda v: constant(ctx.uf, v.dim(), ctx.const_owner(n))
                            if isinstance(v, torch.Tensor) else None, value)
        if n.op == "get_attr":
            return ctx.get_attr(n, value)
        call = OpCall(ctx, n, args, kwargs, largs, lkwargs, value)
        if n.op == "call_module":
            rule = ctx.rules.find(ctx.modules[n.target])
            if rule is None or not args or not isinstance(args[0], torch.Tensor):
                return call.unknown("has no layer rule")
            return rule.label(call)
        table = FUNCTIONS if n.op == "call_function" else METHODS
        handler = table.get(n.target)
        if handler is None:
            has_tensor = any(isinstance(v, torch.Tensor) for v in tree_leaves(value))
            return call.unknown() if has_tensor else None
        return handler(call)


_ACTIVATION_FUNCTIONS = {"relu", "relu_", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu",
                         "silu", "mish", "hardswish", "hardtanh", "prelu"}


def _is_activation(n: fx.Node, ctx: _Context) -> bool:
    """Activation outputs are where apoz / mean_activation / taylor observe channels."""
    if n.op == "call_module":
        module = ctx.modules[n.target]
        rule = ctx.rules.find(module)
        return rule is not None and rule.is_activation(module)
    name = n.target if isinstance(n.target, str) else getattr(n.target, "__name__", "")
    return n.op in ("call_function", "call_method") and name in _ACTIVATION_FUNCTIONS


class ChannelGraph:
    """The result of analysing a model: members, cost-bearing layers and ChannelGroups."""

    def __init__(self, ctx: _Context, output: Any) -> None:
        self.uf = ctx.uf
        self.members = list(ctx.members.values())
        self.layers = ctx.layers
        self.output = output
        self.gm = ctx.gm
        self.points = ctx.points
        self.rules = ctx.rules
        self.protections = ctx.protections
        self.groups = self._build_groups()
        self.by_name = {g.name: g for g in self.groups}

    def prunable_channels(self) -> int:
        """What "channels" means in a Target and in the iterative loop's step log: the channels
        of the groups that can lose any (a group with every channel protected does not count)."""
        return sum(group.size for group in self.groups if group.prunable)

    def inexact_mask(self) -> np.ndarray:
        """Bool over atoms, true at the class roots whose removal is not exact (channels of a
        LayerNorm pruned under the non-exact policy)."""
        mask = np.zeros(self.uf.size, dtype=bool)
        for member in self.members:
            if not member.exact:
                mask[self.uf.roots(member.atoms)] = True
        return mask

    def protect(self, atoms: np.ndarray, where: str, kind: str, why: str) -> None:
        """Protect more atoms after the trace (e.g. `ignore`), and refresh the groups' flags."""
        atoms = np.asarray(atoms, dtype=np.int64).ravel()
        self.uf.protect(atoms)
        self.protections.append(Protection(where, kind, why, atoms))
        for group in self.groups:
            group.protected = self.uf.protected[self.uf.roots(group.channels)].copy()

    def tie(self, first: np.ndarray, second: np.ndarray) -> None:
        """Make channel first[i] and second[i] one removable channel for every i (atoms of two
        members that must keep corresponding channels, e.g. the task columns of a cross-stitch
        model), and rebuild the groups."""
        first, second = np.asarray(first, dtype=np.int64), np.asarray(second, dtype=np.int64)
        if first.shape != second.shape:
            raise LeannetError(f"cannot tie {first.size} channels to {second.size}")
        self.uf.union_arrays(first, second)
        self.groups = self._build_groups()
        self.by_name = {g.name: g for g in self.groups}

    def protection_report(self) -> list[tuple[str, str, int, list[str], type | None]]:
        """(kind, why, protected channels, example places, block type) per cause, most channels
        first. A channel protected by several causes counts for each."""
        in_groups = np.zeros(self.uf.size, dtype=bool)
        for group in self.groups:
            in_groups[group.channels[group.protected]] = True
        counts: dict[tuple[str, str], set[int]] = {}
        places: dict[tuple[str, str], list[str]] = {}
        blocks: dict[tuple[str, str], type | None] = {}
        for p in self.protections:
            roots = self.uf.roots(p.atoms)
            roots = np.unique(roots[in_groups[roots]])
            if roots.size == 0:
                continue
            key = (p.kind, p.why)
            blocks[key] = p.block
            counts.setdefault(key, set()).update(roots.tolist())
            if p.where not in places.setdefault(key, []):
                places[key].append(p.where)
        report = [(kind, why, len(roots), places[(kind, why)], blocks[(kind, why)])
                  for (kind, why), roots in counts.items()]
        return sorted(report, key=lambda r: -r[2])

    def member_classes(self, member: Member) -> np.ndarray:
        """Class root of each index of a member."""
        return self.uf.roots(member.atoms)

    def _build_groups(self) -> list[ChannelGroup]:
        """Classes of all members, grouped by owner, in order of first appearance."""
        uf = self.uf
        if not self.members:
            return []
        which = np.concatenate([np.full(len(m.atoms), i) for i, m in enumerate(self.members)])
        roots = uf.roots(np.concatenate([m.atoms for m in self.members]))
        owners = uf.group_of(roots)
        unique_roots, first = np.unique(roots, return_index=True)
        order = np.argsort(first, kind="stable")
        unique_roots, first = unique_roots[order], first[order]
        root_owner = owners[first]
        names = self._owner_names()
        groups, used = [], set()
        group_order = np.unique(root_owner)
        for owner in group_order:
            channels = unique_roots[root_owner == owner]
            member_ids = np.unique(which[owners == owner])
            name = names.get(int(owner), uf.owner_names[int(owner)])
            while name in used:
                name += "#"
            used.add(name)
            groups.append(ChannelGroup(name, channels, uf.protected[channels].copy(),
                                       [self.members[i] for i in member_ids]))
        return groups

    def _owner_names(self) -> dict[int, str]:
        """Each group is named after its first real producer (not an input or a constant)."""
        names: dict[int, str] = {}
        for owner, name in enumerate(self.uf.owner_names):
            root = self.uf.find_owner(owner)
            if root not in names and not name.startswith("~"):
                names[root] = name
        return names


def build_graph(model: nn.Module, example_inputs: Any, leaf_modules: Iterable[Any] = (),
                rules: RuleSet | Iterable[LayerRule] = ()) -> ChannelGraph:
    """Trace once and label every tensor; model left in its original train/eval state.

    The training-mode graph is used when it runs on the example inputs; otherwise (e.g. an
    auxiliary head that needs bigger inputs) the eval-mode graph, with a warning naming the
    modules it never calls."""
    rules = rules if isinstance(rules, RuleSet) else RuleSet(rules)
    given = len(example_inputs) if isinstance(example_inputs, (tuple, list)) else 1
    try:
        return _label_graph(model, trace(model, leaf_modules, True, rules, given),
                            example_inputs, rules)
    except LeannetError as err:
        first = err
        try:
            gm = trace(model, leaf_modules, False, rules, given)
            graph = _label_graph(model, gm, example_inputs, rules)
        except LeannetError:
            raise first from None
    called = {n.target for n in gm.graph.nodes if n.op in ("call_module", "get_attr")}
    unseen = [name for name, m in model.named_modules() if name and
              any(True for _ in m.parameters(recurse=False)) and name not in called and
              not any(c.startswith(name + ".") for c in called)]
    if unseen:
        warnings.warn(f"{type(model).__name__}: the training-mode graph does not run on these "
                      f"inputs ({first}); pruned with the eval-mode graph, in which "
                      f"{', '.join(unseen[:5])}{'...' if len(unseen) > 5 else ''} never run "
                      "(they keep their shapes and will not fit the pruned model in training)",
                      stacklevel=2)
    return graph


def _label_graph(model: nn.Module, gm: fx.GraphModule, example_inputs: Any,
                 rules: RuleSet) -> ChannelGraph:
    inputs = example_inputs if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    ctx = _Context(gm, rules)
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            output = _Labeller(gm, ctx).run(*inputs)
    except LeannetError:
        raise
    except Exception as err:  # noqa: BLE001
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise LeannetError(f"running {type(model).__name__} on the example inputs failed: "
                           f"{first}") from None
    finally:
        for m, mode in modes.items():
            m.training = mode
    return ChannelGraph(ctx, output)
