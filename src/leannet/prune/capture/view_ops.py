"""Labels through ops that rearrange elements (view, flatten, permute, cat, chunk, indexing).

The op is applied to the label itself (expanded to the tensor's shape), which gives the right
index offsets for free. On top, each op adds the constraint that keeps a pruned tensor
rectangular and the op still meaningful: a split of a channel dimension into factors unions the
channels across the fixed factors (channel shuffle), chunks union position i of every piece,
literal slices of a channel dimension protect it.
"""
from __future__ import annotations

import operator
from typing import Any, Callable, cast

import torch
from torch import fx

from leannet.prune.capture.labels import canon, compress, constant, tree_leaves, tree_map
from leannet.prune.capture.opcall import OpCall
from leannet.prune.capture.tensor_ops import dim_arg, op

PERMUTING = ("permute", "transpose", "swapaxes", "swapdims", "movedim", "moveaxis", "t",
             "squeeze", "unsqueeze", "expand", "expand_as", "flip", "repeat", "repeat_interleave",
             "view_as", "reshape_as")


def _run_on_label(call: OpCall, full: torch.Tensor, module: Any = None) -> Any:
    """Call the node's own op with the label in place of its tensor input."""
    node, args, kwargs = call.node, call.args, call.kwargs
    if module is not None:
        return module(full)
    if node.op == "call_method":
        if node.target in ("view", "view_as"):
            full = full.contiguous()
        return getattr(full, str(node.target))(*args[1:], **kwargs)
    return cast(Callable[..., Any], node.target)(full, *args[1:], **kwargs)


def _finish(ctx, result):
    return tree_map(lambda t: canon(ctx.uf, t.contiguous()) if isinstance(t, torch.Tensor) else None,
                    result)


def permuting(call: OpCall, module: Any = None) -> Any:
    """Pure rearrangements whose meaning doesn't depend on channel counts."""
    label = canon(call.ctx.uf, call.label)
    if label is None:
        return None
    return _finish(call.ctx, _run_on_label(call, label.expand(call.x.shape), module))


def _factor_groups(a: tuple, b: tuple) -> list[tuple[list[int], list[int]]]:
    """Pair runs of input dims with runs of output dims of equal product (a reshape's map)."""
    groups, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        si, sj, pa, pb = [i], [j], a[i], b[j]
        i, j = i + 1, j + 1
        while pa != pb:
            if pa < pb and i < len(a):
                pa *= a[i]
                si.append(i)
                i += 1
            elif j < len(b):
                pb *= b[j]
                sj.append(j)
                j += 1
            else:
                break
        groups.append((si, sj))
    if groups:
        groups[-1][0].extend(range(i, len(a)))
        groups[-1][1].extend(range(j, len(b)))
    return groups


def _shape_spec(node: fx.Node, args, module=None) -> list[bool] | None:
    """Which output dims of a view/reshape/unflatten are dynamic (computed, or -1)."""
    if module is not None:
        return None if isinstance(module, torch.nn.Flatten) else []
    name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
    if name == "flatten":
        return None
    raw = node.args[2] if name == "unflatten" else \
        (node.args[1] if len(node.args) == 2 else list(node.args[1:]))
    if isinstance(raw, fx.Node):
        return []
    raw = list(raw) if isinstance(raw, (tuple, list)) else [raw]
    return [bool(isinstance(r, fx.Node) or r == -1) for r in raw]


def reshaping(call: OpCall, module: Any = None) -> Any:
    """view / reshape / flatten / unflatten: merges are free; splits need one dynamic factor."""
    ctx, node, args, value = call.ctx, call.node, call.args, call.value
    label = canon(ctx.uf, call.label)
    if label is None:
        return None
    x = args[0]
    full = label.expand(x.shape)
    result = _run_on_label(call, full, module).contiguous()
    spec = _shape_spec(node, args, module)
    dynamic = _dynamic_dims(node, spec, tuple(x.shape), tuple(value.shape), args)
    for si, sj in _factor_groups(tuple(x.shape), tuple(value.shape)):
        varying = [d for d in si if label.shape[d] > 1]
        if not varying or len(si) == len(sj) == 1:
            continue
        if len(sj) == 1 and len(varying) == 1:
            continue  # a merge (flatten): each channel owns a contiguous block
        if len(si) == 1:
            free = [d for d in sj if dynamic[d] and value.shape[d] > 1]
            if len(free) == 1:
                small = compress(result)
                rows = small.movedim(free[0], 0).reshape(small.shape[free[0]], -1)
                ctx.uf.union_arrays(rows[:, :1].expand_as(rows).numpy(), rows.numpy())
                continue
        ctx.protect(label.numpy(), node, "splits a channel dimension into fixed factors")
    return canon(ctx.uf, result)


def _dynamic_dims(node, spec, in_shape, out_shape, args) -> list[bool]:
    """Per output dim: may its size follow the channel count?"""
    if spec is None:  # flatten: only merges
        return [True] * len(out_shape)
    if node.op != "call_module" and (node.target == "unflatten" or
                                     getattr(node.target, "__name__", "") == "unflatten"):
        dim = args[1] % len(in_shape)
        return [False] * dim + spec + [False] * (len(out_shape) - dim - len(spec))
    return spec if len(spec) == len(out_shape) else [False] * len(out_shape)


def _index_dims(index: Any, shape: tuple) -> list[tuple[int, bool]]:
    """(input dim, whole?) for each dim an indexing expression consumes. A slice from the start
    whose stop reaches the end is whole, and stays whole when the dimension shrinks."""
    ndim = len(shape)
    items = list(index) if isinstance(index, tuple) else [index]
    consuming = sum(1 for it in items if it is not None and it is not Ellipsis)
    out, dim = [], 0
    for it in items:
        if it is None:
            continue
        if it is Ellipsis:
            dim += ndim - consuming
            continue
        if isinstance(it, slice):
            whole = it.start in (None, 0) and it.step in (None, 1) and (
                it.stop is None or (isinstance(it.stop, int) and dim < ndim
                                    and it.stop >= shape[dim]))
            out.append((dim, whole))
        elif isinstance(it, torch.Tensor) and it.dtype == torch.bool:
            out.extend((dim + k, False) for k in range(it.dim()))
            dim += it.dim() - 1
        else:
            out.append((dim, False))
        dim += 1
    return out


def indexing(call: OpCall) -> Any:
    """x[...]: slicing a channel dimension with fixed bounds protects it; tuples are indexed."""
    ctx, args = call.ctx, call.args
    if not isinstance(args[0], torch.Tensor):
        return operator.getitem(call.label, args[1]) if call.label is not None else None
    label = canon(ctx.uf, call.label)
    if label is None:
        return None
    for index_label in tree_leaves(call.largs[1:]):  # index tensors can't lose positions
        if isinstance(index_label, torch.Tensor) and (index_label.shape != (1,) * index_label.dim()):
            ctx.protect(index_label.numpy(), call.node, "is used as an index")
    for dim, whole in _index_dims(args[1], tuple(args[0].shape)):
        if dim < label.dim() and label.shape[dim] > 1 and not whole:
            ctx.protect(label.numpy(), call.node, "takes a fixed slice of a channel dimension")
    return permuting(call.with_label(label))


def narrowing(call: OpCall) -> Any:
    """narrow / select / index_select / roll / unbind / split / tensor_split: partial channel
    selections with fixed sizes protect the dimension; split by a computed size acts as chunk."""
    ctx, node = call.ctx, call.node
    label = canon(ctx.uf, call.label)
    if label is None:
        return None
    name = node.target if isinstance(node.target, str) else node.target.__name__
    default = 0 if name in ("unbind", "split", "tensor_split", "index_select", "narrow",
                            "select") else None
    position = {"split": 2, "tensor_split": 2, "roll": 2}.get(name, 1)
    dim = dim_arg(call, position, default, "dims" if name == "roll" else "dim")
    dims = list(range(label.dim())) if dim is None else \
        [d % label.dim() for d in (dim if isinstance(dim, (tuple, list)) else [dim])]
    if name == "split" and len(node.args) > 1 and isinstance(node.args[1], fx.Node):
        return chunking(call, dims[0])
    if any(label.shape[d] > 1 for d in dims):
        ctx.protect(label.numpy(), node, "selects fixed positions of a channel dimension")
    return permuting(call.with_label(label))


def chunking(call: OpCall, dim: int | None = None) -> Any:
    """chunk: position i of every piece goes together, so the pieces stay equal."""
    ctx, value = call.ctx, call.value
    label = canon(ctx.uf, call.label)
    if label is None:
        return None
    x = call.x
    dim = (dim_arg(call, 2, 0) if dim is None else dim) % x.dim()
    sizes = {piece.shape[dim] for piece in value}
    if label.shape[dim] > 1:
        if len(sizes) == 1 and x.shape[dim] % len(value) == 0:
            full = label.expand(*[x.shape[d] if d == dim else label.shape[d]
                                  for d in range(label.dim())]).movedim(dim, 0)
            pieces = full.reshape(len(value), x.shape[dim] // len(value), -1)
            ctx.uf.union_arrays(pieces[:1].expand_as(pieces).numpy(), pieces.numpy())
        else:
            ctx.protect(label.numpy(), call.node, "splits channels into unequal pieces")
    return permuting(call.with_label(label))


def concatenating(call: OpCall) -> Any:
    """cat / stack: channel concat keeps offsets; joining along another dim unions channels."""
    ctx, node, value = call.ctx, call.node, call.value
    stack = (node.target is torch.stack)
    tensors = call.x
    dim = dim_arg(call, 1, 0) % (value.dim())
    labels = []
    for t, l in zip(tensors, call.label):
        l = canon(ctx.uf, l) if l is not None else constant(ctx.uf, t.dim(), ctx.const_owner(node))
        labels.append(l.unsqueeze(dim) if stack else l)
    shapes = [t.unsqueeze(dim).shape if stack else t.shape for t in tensors]
    other = any(l.shape[d] > 1 for l in labels for d in range(l.dim()) if d != dim)
    along = any(l.shape[dim] > 1 for l in labels)
    if not other:
        pieces = [l.expand(*[s if d == dim else 1 for d, s in enumerate(shape)])
                  for l, shape in zip(labels, shapes)]
        return canon(ctx.uf, torch.cat(pieces, dim))
    if not along:
        joined = torch.broadcast_tensors(*labels)
        for o in joined[1:]:
            ctx.uf.union_arrays(joined[0].numpy(), o.numpy())
        return canon(ctx.uf, joined[0].contiguous())
    for l in labels:
        ctx.protect(l.numpy(), node, "joins tensors whose channels differ along two dims")
    return constant(ctx.uf, value.dim(), ctx.const_owner(node))


def _torch_functions(names: tuple[str, ...]) -> tuple:
    return tuple(getattr(torch, n) for n in names if hasattr(torch, n))


RESHAPING = ("view", "reshape", "flatten", "unflatten")
NARROWING = ("narrow", "select", "index_select", "roll", "unbind", "split", "tensor_split")
op(_torch_functions(PERMUTING), PERMUTING)(permuting)
op(_torch_functions(RESHAPING), RESHAPING)(reshaping)
op(_torch_functions(NARROWING), NARROWING)(narrowing)
op((torch.chunk,), ("chunk",))(chunking)
op((operator.getitem,), ("__getitem__",))(indexing)
op((torch.cat, torch.concat, torch.concatenate, torch.stack))(concatenating)
