"""How channel labels flow through tensor functions and methods (add, cat, view, chunk, mean...).

Each handler gets the node's concrete argument values and their labels and returns the output's
label, unioning atoms that must go together and protecting atoms it cannot follow. Anything not
registered here is an unknown op: the channels it touches are protected.
"""
from __future__ import annotations

import operator
from typing import Any, Callable

import torch
import torch.nn.functional as F

from leannet.prune.labels import canon, constant, tree_leaves, tree_map

FUNCTIONS: dict[Any, Callable] = {}
METHODS: dict[str, Callable] = {}


def _register(handler: Callable, functions: tuple = (), methods: tuple = ()) -> None:
    for fn in functions:
        FUNCTIONS[fn] = handler
    for name in methods:
        METHODS[name] = handler


def _tensor_pairs(ctx, args, kwargs, largs, lkwargs) -> list[tuple[torch.Tensor, Any]]:
    values = tree_leaves(args) + tree_leaves(kwargs)
    labels = tree_leaves(largs) + tree_leaves(lkwargs)
    return [(v, l) for v, l in zip(values, labels) if isinstance(v, torch.Tensor) and l is not None]


def elementwise(ctx, node, args, kwargs, largs, lkwargs, value):
    """Broadcasting elementwise ops: operands' channels at the same position are unioned."""
    if not isinstance(value, torch.Tensor):
        return ctx.unknown(node, largs, lkwargs, value)
    pairs = _tensor_pairs(ctx, args, kwargs, largs, lkwargs)
    nd, out = value.dim(), value.shape
    aligned = []
    for v, l in pairs:
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
            ctx.uf.protect(lab.numpy())
        else:
            kept.append(lab)
    if not kept:
        return constant(ctx.uf, nd, ctx.const_owner(node))
    expanded = torch.broadcast_tensors(*kept)
    for other in expanded[1:]:
        ctx.uf.union_arrays(expanded[0].numpy(), other.numpy())
    return canon(ctx.uf, expanded[0].contiguous())


def passthrough(ctx, node, args, kwargs, largs, lkwargs, value):
    """Unary elementwise ops (activations, casts, dropout): the label of the first tensor."""
    pairs = _tensor_pairs(ctx, args, kwargs, largs, lkwargs)
    if not pairs or not isinstance(value, torch.Tensor):
        return None if not pairs else ctx.unknown(node, largs, lkwargs, value)
    return canon(ctx.uf, pairs[0][1])


def _dim_arg(args, kwargs, position: int, default, name: str = "dim"):
    if name in kwargs:
        return kwargs[name]
    return args[position] if len(args) > position else default


def coupled_along(ctx, node, args, kwargs, largs, lkwargs, value, dim):
    """Ops that mix values along `dim` (softmax, normalize): channels there are protected."""
    label = canon(ctx.uf, largs[0])
    if label is None:
        return None
    dims = range(label.dim()) if dim is None else [d % label.dim() for d in
                                                   (dim if isinstance(dim, (tuple, list)) else [dim])]
    if any(label.shape[d] > 1 for d in dims):
        ctx.uf.protect(label.numpy())
    return canon(ctx.uf, label) if isinstance(value, torch.Tensor) else \
        ctx.unknown(node, largs, lkwargs, value)


def softmax(ctx, node, args, kwargs, largs, lkwargs, value):
    """softmax / log_softmax / normalize along a dimension."""
    default = 1 if node.target in (F.normalize,) else -1
    return coupled_along(ctx, node, args, kwargs, largs, lkwargs, value,
                         _dim_arg(args, kwargs, 1, default))


def reduction(ctx, node, args, kwargs, largs, lkwargs, value):
    """mean/sum/amax...: fine along dims where channels don't differ; else protected."""
    if len(args) > 1 and isinstance(args[1], torch.Tensor):  # torch.max(a, b): elementwise
        return elementwise(ctx, node, args, kwargs, largs, lkwargs, value)
    label = canon(ctx.uf, largs[0])
    if label is None:
        return None
    x = args[0]
    dim = _dim_arg(args, kwargs, 1, None)
    keepdim = bool(_dim_arg(args, kwargs, 2, False, "keepdim"))
    dims = list(range(x.dim())) if dim is None else \
        [d % x.dim() for d in (dim if isinstance(dim, (tuple, list)) else [dim])]
    if any(label.shape[d] > 1 for d in dims):
        ctx.uf.protect(label.numpy())
        return tree_map(lambda v: constant(ctx.uf, v.dim(), ctx.const_owner(node))
                        if isinstance(v, torch.Tensor) else None, value)
    out = label
    for d in sorted(dims, reverse=True):
        out = out.narrow(d, 0, 1) if keepdim else out.select(d, 0)
    out = out.contiguous()
    return tree_map(lambda v: out if isinstance(v, torch.Tensor) else None, value)


def spatial(ctx, node, args, kwargs, largs, lkwargs, value):
    """Pooling / interpolation / padding: dims >= 2 change, batch and channels stay."""
    label = canon(ctx.uf, largs[0])
    if label is None or not isinstance(value, torch.Tensor):
        return ctx.unknown(node, largs, lkwargs, value) if label is not None else None
    if any(label.shape[d] > 1 for d in range(2, label.dim())) or label.dim() != value.dim():
        ctx.uf.protect(label.numpy())
        return constant(ctx.uf, value.dim(), ctx.const_owner(node))
    return label


def pad(ctx, node, args, kwargs, largs, lkwargs, value):
    """F.pad: fine when only trailing spatial dims are padded."""
    widths = _dim_arg(args, kwargs, 1, (), "pad")
    label = canon(ctx.uf, largs[0])
    if label is None:
        return None
    touched = range(label.dim() - len(widths) // 2, label.dim())
    if any(label.shape[d] > 1 for d in touched):
        ctx.uf.protect(label.numpy())
    return label


_register(elementwise, (operator.add, operator.sub, operator.mul, operator.truediv,
                        operator.iadd, operator.isub, operator.imul, operator.itruediv,
                        operator.pow, operator.floordiv, torch.add, torch.sub, torch.mul, torch.div,
                        torch.true_divide, torch.maximum, torch.minimum, torch.where, torch.pow,
                        torch.addcmul, torch.lerp),
          ("add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "maximum", "minimum",
           "pow", "pow_", "where", "true_divide", "lerp"))
_register(passthrough, (F.relu, F.relu_, F.relu6, F.hardswish, F.hardsigmoid, F.sigmoid, F.tanh,
                        F.silu, F.gelu, F.elu, F.leaky_relu, F.mish, F.hardtanh, F.softplus,
                        F.selu, F.celu, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d,
                        F.alpha_dropout, F.feature_alpha_dropout, torch.relu, torch.relu_,
                        torch.sigmoid, torch.tanh, torch.exp, torch.neg, torch.abs, torch.clamp,
                        torch.sqrt, torch.rsqrt, torch.square, torch.erf, operator.neg,
                        operator.pos, torch.clone, torch.nan_to_num),
          ("relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "exp", "exp_", "neg", "abs",
           "clamp", "clamp_", "clamp_min", "clamp_max", "float", "double", "half", "bfloat16",
           "to", "type", "type_as", "contiguous", "clone", "detach", "requires_grad_", "sqrt",
           "rsqrt", "square", "erf", "hardtanh_", "nan_to_num", "cpu", "cuda"))
_register(softmax, (F.softmax, F.log_softmax, torch.softmax, torch.log_softmax, F.normalize),
          ("softmax", "log_softmax"))
_register(reduction, (torch.mean, torch.sum, torch.amax, torch.amin, torch.std, torch.var,
                      torch.logsumexp, torch.max, torch.min, torch.norm),
          ("mean", "sum", "amax", "amin", "std", "var", "logsumexp", "max", "min", "norm"))
_register(spatial, (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
                    F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d,
                    F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.max_pool1d, F.max_pool2d,
                    F.max_pool3d, F.interpolate, F.upsample, F.lp_pool2d, torch.avg_pool1d,
                    torch.adaptive_avg_pool1d, torch.max_pool2d))
_register(pad, (F.pad,))
