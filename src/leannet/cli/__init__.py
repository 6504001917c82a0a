"""The `leannet` command line: a thin typer app whose commands live one per module in this package.

Each module `leannet/cli/<name>.py` defines `register(app: typer.Typer) -> None`; they are found
automatically, so adding a command never touches this file.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

app = typer.Typer(
    name="leannet",
    help="Compact CNNs, multi-task learning and verified iterative structured pruning.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_commands() -> None:
    """Import every command module in this package and let it add its commands."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


_register_commands()


def main() -> None:
    """Entry point: run the app, turning LeannetError into a one-line message and exit code 2."""
    from leannet.errors import LeannetError

    try:
        app(standalone_mode=False)
    except LeannetError as err:
        typer.secho(f"error: {err}", fg="red", err=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        sys.exit(130)
    except Exception as err:  # click usage errors come through here with standalone_mode=False
        import click

        if isinstance(err, click.exceptions.ClickException):
            err.show()
            sys.exit(err.exit_code)
        if isinstance(err, click.exceptions.Exit):
            sys.exit(err.exit_code)
        raise
