"""A registry of model builders keyed by name, in the spirit of timm's `create_model`.

Every model built here remembers how it was made (`model.leannet_config`), so a model folder can
rebuild it from JSON alone, without pickle.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from leannet.errors import LeannetError
from leannet.plugins import import_modules


@dataclass(frozen=True)
class ModelEntry:
    """A registered builder with a one-line description and its default input image size."""

    builder: Callable[..., nn.Module]
    description: str
    default_image_size: int


_REGISTRY: dict[str, ModelEntry] = {}


def register(name: str, description: str = "", default_image_size: int = 224) -> Callable:
    """Decorator: register `builder` under `name`."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        doc = (builder.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = ModelEntry(builder, description or (doc[0] if doc else ""),
                                     default_image_size)
        return builder

    return decorate


def _load_builtin_models() -> None:
    """Import every module of `leannet.models` once so their `@register` calls run."""
    import_modules("leannet.models")


def list_models() -> dict[str, ModelEntry]:
    """All registered models, by name."""
    _load_builtin_models()
    return dict(sorted(_REGISTRY.items()))


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model; unknown names and arguments give a one-line error."""
    models = list_models()
    if name not in models:
        raise LeannetError(f"unknown model {name!r}; expected one of {', '.join(models)}")
    entry = models[name]
    params = inspect.signature(entry.builder).parameters
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    unknown = [k for k in kwargs if k not in params and not accepts_any]
    if unknown:
        raise LeannetError(
            f"model {name!r} does not take {', '.join(unknown)}; it takes {', '.join(params)}")
    try:
        model = entry.builder(**kwargs)
    except (TypeError, ValueError, ZeroDivisionError, RuntimeError) as err:
        raise LeannetError(f"cannot build model {name!r} with {kwargs}: {err}") from None
    image_size = kwargs.get("image_size", _default_image_size(entry, kwargs))
    in_channels = kwargs.get("in_channels", params["in_channels"].default
                             if "in_channels" in params else 3)
    config: dict[str, Any] = {
        "name": name,
        "kwargs": dict(kwargs),
        "input_shape": [int(in_channels), int(image_size), int(image_size)],
    }
    setattr(model, "leannet_config", config)  # noqa: B010 (a plain attribute, not a submodule)
    return model


def _default_image_size(entry: ModelEntry, kwargs: dict[str, Any]) -> int:
    """Small-input variants default to 32 px, others to the entry's default."""
    return 32 if kwargs.get("small_input") else entry.default_image_size


def model_config(model: nn.Module) -> dict[str, Any]:
    """How a registry model was built (name, kwargs, input shape, plans, data source); {} for a
    model leannet did not build."""
    config = getattr(model, "leannet_config", None)
    return config if isinstance(config, dict) else {}


def model_input_shape(model: nn.Module, batch_size: int = 1) -> tuple[int, ...]:
    """The (N, C, H, W) input a registry-built model expects."""
    config = getattr(model, "leannet_config", None)
    if config is None:
        raise LeannetError("model was not built by leannet.create_model; pass its input shape")
    return (batch_size, *config["input_shape"])
