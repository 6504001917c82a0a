"""A registry of model builders keyed by name, in the spirit of timm's `create_model`.

Every model built here remembers how it was made (`model.leannet_config`), so a model folder can
rebuild it from JSON alone, without pickle. Besides leannet's own names, a zoo registers a prefix
(`torchvision:`, `timm:`; one file each, `zoo_<name>.py`) so `create_model("torchvision:resnet18")`
builds that zoo's architecture with its own metadata (classes, input size, normalisation).
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


@dataclass(frozen=True)
class ZooInfo:
    """What a zoo says about one of its architectures: the defaults a model is built with."""

    constructor: str  # e.g. "torchvision.models.resnet18", recorded in config.json
    num_classes: int = 1000
    image_size: int = 224
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    version: str = ""


@dataclass(frozen=True)
class Zoo:
    """A model zoo behind a prefix: `info(arch)` its metadata, `build(arch, num_classes,
    in_channels, image_size, **kwargs)` a fresh (untrained) model, `weights(arch, tag)` a state
    dict through the zoo's own download and cache code (`tag` "DEFAULT" or a named enum)."""

    prefix: str
    description: str
    info: Callable[[str], ZooInfo]
    build: Callable[..., nn.Module]
    weights: Callable[[str, str], dict[str, Any]]


_ZOOS: dict[str, Zoo] = {}


def register_zoo(zoo: Zoo) -> Zoo:
    """Add a zoo under its prefix (`zoo.prefix`, without the colon)."""
    _ZOOS[zoo.prefix] = zoo
    return zoo


def list_zoos() -> dict[str, Zoo]:
    """Registered zoos by prefix."""
    _load_builtin_models()
    return dict(sorted(_ZOOS.items()))


def split_zoo_name(name: str) -> tuple[Zoo, str] | None:
    """`("torchvision" zoo, "resnet18")` for "torchvision:resnet18"; None for a registry name."""
    if ":" not in name:
        return None
    prefix, arch = name.split(":", 1)
    zoos = list_zoos()
    if prefix not in zoos:
        raise LeannetError(f"unknown model zoo {prefix!r} in {name!r}; expected one of "
                           f"{', '.join(f'{z}:NAME' for z in zoos)} or a leannet model name")
    if not arch:
        raise LeannetError(f"{name!r} names no architecture; expected {prefix}:NAME")
    return zoos[prefix], arch


def get_model_entry(name: str) -> ModelEntry:
    """The entry for a registry name or a zoo name (`torchvision:mobilenet_v3_small`); a zoo
    entry's builder takes num_classes, in_channels, image_size and the zoo's own arguments."""
    zoo_name = split_zoo_name(name)
    if zoo_name is None:
        models = list_models()
        if name not in models:
            raise LeannetError(f"unknown model {name!r}; expected one of {', '.join(models)}, "
                               "or torchvision:NAME / timm:NAME")
        return models[name]
    zoo, arch = zoo_name
    info = zoo.info(arch)

    def builder(num_classes: int = info.num_classes, in_channels: int = 3,
                image_size: int | None = None, **kwargs: Any) -> nn.Module:
        return zoo.build(arch, num_classes=num_classes, in_channels=in_channels,
                         image_size=image_size or info.image_size, **kwargs)

    builder.__doc__ = f"{info.constructor} ({zoo.description})"
    return ModelEntry(builder, builder.__doc__, info.image_size)


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
    """Build a registered model or a zoo model (`torchvision:NAME`, `timm:NAME`); unknown names
    and arguments give a one-line error."""
    entry = get_model_entry(name)
    params = inspect.signature(entry.builder).parameters
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    unknown = [k for k in kwargs if k not in params and not accepts_any]
    if unknown:
        raise LeannetError(
            f"model {name!r} does not take {', '.join(unknown)}; it takes {', '.join(params)}")
    try:
        model = entry.builder(**kwargs)
    except LeannetError:
        raise
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
    zoo_name = split_zoo_name(name)
    if zoo_name is not None:  # how to rebuild it, and what inputs its weights expect
        info = zoo_name[0].info(zoo_name[1])
        config["zoo"] = {"constructor": info.constructor, "version": info.version}
        config["normalization"] = {"mean": list(info.mean), "std": list(info.std)}
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
