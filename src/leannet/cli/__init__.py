"""The `leannet` command line: a thin typer app whose commands live one per module in this package.

Each module `leannet/cli/<name>.py` defines `register(app: typer.Typer) -> None`; they are found
automatically, so adding a command never touches this file.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn, Sequence

import typer

from leannet.errors import LeannetError
from leannet.plugins import import_modules

app = typer.Typer(
    name="leannet",
    help="Compact CNNs, multi-task learning and verified iterative structured pruning.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_commands() -> None:
    """Import every command module in this package and let it add its commands."""
    for module in import_modules(__name__, skip=()):
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


_register_commands()

# Importing torchao (through the deploy runtimes) makes torch log a deprecation line on stderr;
# the CLI keeps stderr for its own one-line messages.
logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
DEBUG_ENV = "LEANNET_DEBUG"


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks of unexpected "
                                     "errors (or set LEANNET_DEBUG=1).")) -> None:
    """Compact CNNs, multi-task learning and verified iterative structured pruning."""
    # `main` takes --debug off the line before typer sees it; this option only documents it.


def _command_names() -> list[str]:
    """The registered command names, for messages that must name the valid choices."""
    return sorted(c.name or c.callback.__name__ for c in app.registered_commands
                  if c.callback is not None)


def _fail(message: str, code: int) -> NoReturn:
    """Print one line on stderr and exit: the only way the CLI reports a problem."""
    first = " ".join(str(message).split())  # one line, whatever the message held
    typer.secho(f"error: {first}", fg="red", err=True)
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: every failure is one line on stderr.

    Bad input (LeannetError, usage errors: unknown command or option, bad or missing value)
    exits 2; an interrupt 130; an unexpected error 1, with a hint on how to see the traceback.
    Typer raises its own exception classes (it vendors click), so they are recognised by what
    they offer (`format_message`, `exit_code`) rather than by a click import.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get(DEBUG_ENV) == "1"
    args = [a for a in args if a != "--debug"]  # accepted anywhere on the line
    if not args:
        args = ["--help"]
    try:
        result = app(args=args, prog_name="leannet", standalone_mode=False)
    except LeannetError as err:
        _fail(str(err), 2)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        sys.exit(130)
    except typer.Exit as exit_:
        sys.exit(exit_.exit_code)
    except Exception as err:
        format_message = getattr(err, "format_message", None)
        if callable(format_message) and hasattr(err, "exit_code"):
            message = str(format_message())  # a usage error: unknown command, bad option value
            if message.startswith("No such command"):
                message += f" Commands: {', '.join(_command_names())}."
            _fail(message, 2)
        if debug:
            raise
        if isinstance(err, MemoryError):
            _fail("out of memory; use a smaller --batch-size or --image-size", 1)
        if isinstance(err, OSError) and err.strerror:
            where = f" ({err.filename})" if err.filename else ""
            _fail(f"{err.strerror}{where}", 2)
        _fail(f"unexpected {type(err).__name__}: {err} (run with --debug or {DEBUG_ENV}=1 for the "
              "traceback)", 1)
    if isinstance(result, int) and result:
        sys.exit(result)
