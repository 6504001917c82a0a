"""How channel labels flow through tensor functions and methods (add, mean, softmax, pooling...).

Each handler gets the call (concrete argument values, their labels, the output: an OpCall) and
returns the output's label, unioning atoms that must go together and protecting atoms it cannot
follow. Anything not registered here or in view_ops is an unknown op: the channels it touches are
protected. Handlers are registered with one decorator, `@op(functions, methods)`.
"""
from __future__ import annotations

import operator
from typing import Any, Callable

import torch
import torch.nn.functional as F

from leannet.prune.capture.labels import canon, constant, tree_leaves, tree_map
from leannet.prune.capture.opcall import OpCall

Handler = Callable[[OpCall], Any]
FUNCTIONS: dict[Any, Handler] = {}
METHODS: dict[str, Handler] = {}


def op(functions: tuple = (), methods: tuple = ()) -> Callable[[Handler], Handler]:
    """Decorator: `handler(call) -> label` handles these functions and tensor methods."""
    def decorate(handler: Handler) -> Handler:
        for fn in functions:
            FUNCTIONS[fn] = handler
        for name in methods:
            METHODS[name] = handler
        return handler
    return decorate


def _tensor_pairs(call: OpCall) -> list[tuple[torch.Tensor, Any]]:
    values = tree_leaves(call.args) + tree_leaves(call.kwargs)
    labels = tree_leaves(call.largs) + tree_leaves(call.lkwargs)
    return [(v, l) for v, l in zip(values, labels) if isinstance(v, torch.Tensor) and l is not None]


def dim_arg(call: OpCall, position: int, default: Any, name: str = "dim") -> Any:
    """An argument given by position or keyword."""
    if name in call.kwargs:
        return call.kwargs[name]
    return call.args[position] if len(call.args) > position else default


@op((operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd, operator.isub,
     operator.imul, operator.itruediv, operator.pow, operator.floordiv, torch.add, torch.sub,
     torch.mul, torch.div, torch.true_divide, torch.maximum, torch.minimum, torch.where,
     torch.pow, torch.addcmul, torch.lerp),
    ("add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "maximum", "minimum", "pow",
     "pow_", "where", "true_divide", "lerp"))
def elementwise(call: OpCall) -> Any:
    """Broadcasting elementwise ops: operands' channels at the same position are unioned."""
    ctx, value = call.ctx, call.value
    if not isinstance(value, torch.Tensor):
        return call.unknown()
    nd, out = value.dim(), value.shape
    aligned = []
    for v, l in _tensor_pairs(call):
        l = canon(ctx.uf, l)
        lead = (1,) * (nd - l.dim())
        aligned.append((l.reshape(lead + tuple(l.shape)), lead + tuple(v.shape)))
    if not aligned:
        return None
    kept = []
    for i, (lab, vshape) in enumerate(aligned):
        spread = any(vshape[d] == 1 and out[d] > 1 and
                     any(o.shape[d] > 1 for j, (o, _) in enumerate(aligned) if j != i)
                     for d in range(nd))
        if spread:  # a size-1 operand broadcast across real channels: it keeps its one channel
            ctx.protect(lab.numpy(), call.node, "a one-channel tensor broadcast over channels")
        else:
            kept.append(lab)
    if not kept:
        return constant(ctx.uf, nd, ctx.const_owner(call.node))
    expanded = torch.broadcast_tensors(*kept)
    for other in expanded[1:]:
        ctx.uf.union_arrays(expanded[0].numpy(), other.numpy())
    return canon(ctx.uf, expanded[0].contiguous())


@op((F.relu, F.relu_, F.relu6, F.hardswish, F.hardsigmoid, F.sigmoid, F.tanh, F.silu, F.gelu,
     F.elu, F.leaky_relu, F.mish, F.hardtanh, F.softplus, F.selu, F.celu, F.dropout, F.dropout1d,
     F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout, torch.relu, torch.relu_,
     torch.sigmoid, torch.tanh, torch.exp, torch.neg, torch.abs, torch.clamp, torch.sqrt,
     torch.rsqrt, torch.square, torch.erf, operator.neg, operator.pos, torch.clone,
     torch.nan_to_num),
    ("relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "exp", "exp_", "neg", "abs",
     "clamp", "clamp_", "clamp_min", "clamp_max", "float", "double", "half", "bfloat16", "to",
     "type", "type_as", "contiguous", "clone", "detach", "requires_grad_", "sqrt", "rsqrt",
     "square", "erf", "hardtanh_", "nan_to_num", "cpu", "cuda"))
def passthrough(call: OpCall) -> Any:
    """Unary elementwise ops (activations, casts, dropout): the label of the first tensor."""
    pairs = _tensor_pairs(call)
    if not pairs or not isinstance(call.value, torch.Tensor):
        return None if not pairs else call.unknown()
    return canon(call.ctx.uf, pairs[0][1])


def coupled_along(call: OpCall, dim: Any) -> Any:
    """Ops that mix values along `dim` (softmax, normalize, LayerNorm): channels there are
    protected."""
    ctx = call.ctx
    label = canon(ctx.uf, call.label)
    if label is None:
        return None
    dims = range(label.dim()) if dim is None else [d % label.dim() for d in
                                                   (dim if isinstance(dim, (tuple, list)) else [dim])]
    if any(label.shape[d] > 1 for d in dims):
        ctx.protect(label.numpy(), call.node, "mixes channels in its statistics")
    return label if isinstance(call.value, torch.Tensor) else call.unknown()


@op((F.softmax, F.log_softmax, torch.softmax, torch.log_softmax, F.normalize),
    ("softmax", "log_softmax"))
def softmax(call: OpCall) -> Any:
    """softmax / log_softmax / normalize along a dimension."""
    default = 1 if call.node.target in (F.normalize,) else -1
    return coupled_along(call, dim_arg(call, 1, default))


@op((torch.mean, torch.sum, torch.amax, torch.amin, torch.std, torch.var, torch.logsumexp,
     torch.max, torch.min, torch.norm),
    ("mean", "sum", "amax", "amin", "std", "var", "logsumexp", "max", "min", "norm"))
def reduction(call: OpCall) -> Any:
    """mean/sum/amax...: fine along dims where channels don't differ; else protected."""
    args, ctx = call.args, call.ctx
    if len(args) > 1 and isinstance(args[1], torch.Tensor):  # torch.max(a, b): elementwise
        return elementwise(call)
    label = canon(ctx.uf, call.label)
    if label is None:
        return None
    x = args[0]
    dim = dim_arg(call, 1, None)
    keepdim = bool(dim_arg(call, 2, False, "keepdim"))
    dims = list(range(x.dim())) if dim is None else \
        [d % x.dim() for d in (dim if isinstance(dim, (tuple, list)) else [dim])]
    if any(label.shape[d] > 1 for d in dims):
        ctx.protect(label.numpy(), call.node, "reduces over channels")
        return tree_map(lambda v: constant(ctx.uf, v.dim(), ctx.const_owner(call.node))
                        if isinstance(v, torch.Tensor) else None, call.value)
    out = label
    for d in sorted(dims, reverse=True):
        out = out.narrow(d, 0, 1) if keepdim else out.select(d, 0)
    out = out.contiguous()
    return tree_map(lambda v: out if isinstance(v, torch.Tensor) else None, call.value)


@op((F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, F.adaptive_max_pool1d,
     F.adaptive_max_pool2d, F.adaptive_max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
     F.max_pool1d, F.max_pool2d, F.max_pool3d, F.interpolate, F.upsample, F.lp_pool2d,
     torch.avg_pool1d, torch.adaptive_avg_pool1d, torch.max_pool2d))
def spatial(call: OpCall) -> Any:
    """Pooling / interpolation / padding: dims >= 2 change, batch and channels stay."""
    ctx, value = call.ctx, call.value
    label = canon(ctx.uf, call.label)
    if label is None or not isinstance(value, torch.Tensor):
        return call.unknown() if label is not None else None
    if any(label.shape[d] > 1 for d in range(2, label.dim())) or label.dim() != value.dim():
        ctx.protect(label.numpy(), call.node, "pools a dimension that holds channels")
        return constant(ctx.uf, value.dim(), ctx.const_owner(call.node))
    return label


@op((F.pad,))
def pad(call: OpCall) -> Any:
    """F.pad: fine when only trailing spatial dims are padded."""
    widths = dim_arg(call, 1, (), "pad")
    label = canon(call.ctx.uf, call.label)
    if label is None:
        return None
    touched = range(label.dim() - len(widths) // 2, label.dim())
    if any(label.shape[d] > 1 for d in touched):
        call.ctx.protect(label.numpy(), call.node, "pads a dimension that holds channels")
    return label
