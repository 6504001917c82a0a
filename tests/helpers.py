"""Helpers shared by the test packages."""
from __future__ import annotations

import sys
from pathlib import Path

from leannet.cli import main


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run `leannet ARGS` in-process through the real entry point; (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["leannet", *args])
    monkeypatch.setenv("COLUMNS", "200")
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def shared_data() -> Path:
    """The benchmark data folder beside the checkout (`../shared/data`); tests using it skip when
    it is absent."""
    return Path(__file__).resolve().parents[2] / "shared" / "data"
