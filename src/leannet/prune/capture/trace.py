"""torch.fx symbolic tracing with user leaf modules, and a one-line message when it fails that
names the block and the source line and suggests marking the block a leaf."""
from __future__ import annotations

import inspect
import traceback
from typing import Any, Iterable

from torch import fx, nn

from leannet.errors import LeannetError
from leannet.prune.rules import RuleSet, trace_hints


class _Tracer(fx.Tracer):
    """fx tracer that stops at user leaf modules, at layers whose rule asks for it and at a zoo's
    untraceable modules (and remembers where it was when tracing failed)."""

    def __init__(self, leaf_types: tuple, leaf_names: set[str], rules: RuleSet,
                 hints: bool = False) -> None:
        hint_types, functions = trace_hints() if hints else ((), ())
        super().__init__(autowrap_functions=functions)
        self.leaf_types, self.leaf_names = leaf_types + hint_types, leaf_names
        self.rules = rules
        self.current: str | None = None

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if (self.leaf_types and isinstance(m, self.leaf_types)) or qualname in self.leaf_names:
            return True
        if self.rules.is_leaf(m):
            return True
        return super().is_leaf_module(m, qualname)

    def call_module(self, m, forward, args, kwargs):
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.current is None:  # the innermost failing block
                self.current = self.path_of_module(m)
            raise


def _defaults(model: nn.Module, given: int | None) -> dict[str, Any] | None:
    """forward's defaulted parameters after the `given` positional inputs, as fx concrete
    arguments (so `if mask is not None:` follows the default instead of the traced branch)."""
    if given is None:
        return None
    try:
        params = list(inspect.signature(model.forward).parameters.values())[given:]
    except (TypeError, ValueError):
        return None
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} or None


def trace(model: nn.Module, leaf_modules: Iterable[Any] = (), training: bool = True,
          rules: RuleSet | None = None, inputs: int | None = None) -> fx.GraphModule:
    """Symbolically trace `model` (by default in training mode, so training-only branches such as
    auxiliary heads are seen and pruned consistently), with forward's defaulted parameters after
    the `inputs` positional inputs fixed to their defaults. If that fails, trace again with the zoo
    rules' hints (modules and functions their authors mark untraceable) as leaves: their channels
    are protected, which is why they are only the fallback."""
    leaves = list(leaf_modules)
    types = tuple(t for t in leaves if isinstance(t, type))
    names = {t for t in leaves if isinstance(t, str)}
    rules = rules or RuleSet()
    modes = {m: m.training for m in model.modules()}
    model.train(training)
    concrete = _defaults(model, inputs)
    try:
        tracer = _Tracer(types, names, rules)
        try:
            graph = tracer.trace(model, concrete_args=concrete)
        except Exception as err:  # noqa: BLE001 - any tracing failure becomes one clear message
            first = _trace_message(model, tracer, err)
            if not any(trace_hints()):
                raise LeannetError(first) from None
            try:
                graph = _Tracer(types, names, rules, hints=True).trace(model,
                                                                       concrete_args=concrete)
            except Exception:  # noqa: BLE001
                raise LeannetError(first) from None
    finally:
        for m, mode in modes.items():
            m.training = mode
    return fx.GraphModule(model, graph)


def _trace_message(model: nn.Module, tracer: _Tracer, err: Exception) -> str:
    """One line: which module and source line failed, and the leaf_modules hint."""
    where = tracer.current or "<top level>"
    try:
        block = type(model.get_submodule(tracer.current)).__name__ if tracer.current else \
            type(model).__name__
    except AttributeError:
        block = "?"
    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if "/torch/" not in f.filename and "/leannet/prune/" not in f.filename]
    line = f" at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno} " \
           f"`{(frames[-1].line or '').split('  #')[0].strip()}`" if frames else ""
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return (f"cannot trace {type(model).__name__} with torch.fx: module {where!r} ({block}){line} "
            f"failed: {reason}; mark that block a leaf with leaf_modules=[{block}] "
            "(its channels are then protected)")
