"""`leannet models`: registered architectures with parameters and MACs at their default input."""
from __future__ import annotations

import inspect
from typing import Callable

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def register(app: typer.Typer) -> None:
    """Add the `models` command."""

    @app.command("models")
    def models() -> None:
        """List registered models with params and MACs at their default input size."""
        from leannet.models import list_models

        table = Table(title="leannet models (default arguments)")
        for column in ("model", "input", "params", "MACs", "description"):
            table.add_column(column, justify="right" if column in ("params", "MACs") else "left")
        with console.status("measuring models"):
            for name, entry in list_models().items():
                required = _required_arguments(entry.builder)
                if required:  # e.g. multi-task models need their tasks; nothing to measure
                    table.add_row(name, "-", "-", "-",
                                  f"{entry.description} (needs {', '.join(required)})")
                    continue
                shape, params, macs = _measure(name)
                table.add_row(name, "x".join(map(str, shape[1:])), f"{params:,}",
                              f"{macs / 1e6:,.1f}M", entry.description)
        console.print(table)
        from leannet.models import list_zoos

        for prefix, zoo in list_zoos().items():  # zoo models by name, e.g. torchvision:resnet18
            console.print(f"also: {prefix}:NAME  {zoo.description}")


def _measure(name: str) -> tuple[tuple[int, ...], int, int]:
    """Input shape, params and MACs of a default model; built on the meta device (no memory, no
    arithmetic, identical counts) and on the CPU only if a builder needs real tensors."""
    import torch

    from leannet.measure import count_macs, count_params
    from leannet.models import create_model, model_input_shape

    try:
        with torch.device("meta"):
            model = create_model(name)
            shape = model_input_shape(model, 1)
            return shape, count_params(model), count_macs(model, shape)
    except Exception:  # noqa: BLE001 - some builders compute on tensors; measure for real
        model = create_model(name)
        shape = model_input_shape(model, 1)
        return shape, count_params(model), count_macs(model, shape)


def _required_arguments(builder: Callable) -> list[str]:
    """Names of the builder's arguments that have no default."""
    return [p.name for p in inspect.signature(builder).parameters.values()
            if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
