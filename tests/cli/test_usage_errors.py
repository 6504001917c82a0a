"""Usage errors and unexpected failures on the command line: one line on stderr, never a traceback."""
import pytest

import leannet.models
from tests.helpers import run_cli

USAGE_ERRORS = [
    (("trian",), "Did you mean 'train'"),
    (("frobnicate",), "Commands: anchors"),
    (("train", "--epoch", "1"), "--epochs"),
    (("train", "--epochs", "abc"), "--epochs"),
    (("eval",), "Missing argument"),
    (("prune",), "Missing argument"),
    (("train", "--batch-size", "1.5"), "--batch-size"),
    (("export", "x", "--format"), "--format"),
]


@pytest.mark.parametrize(("args", "expected"), USAGE_ERRORS)
def test_usage_errors_are_one_line_and_exit_2(monkeypatch, capsys, args, expected):
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert expected in err
    assert "Traceback" not in out + err


def test_no_arguments_prints_help_and_succeeds(monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys)
    assert code == 0 and "train" in out and err == ""


def test_unexpected_error_is_one_line_with_a_hint_and_debug_shows_the_traceback(monkeypatch,
                                                                                 capsys):
    def broken():
        raise RuntimeError("disk controller on fire")

    monkeypatch.setattr(leannet.models, "list_models", broken)
    monkeypatch.delenv("LEANNET_DEBUG", raising=False)
    code, out, err = run_cli(monkeypatch, capsys, "models")
    assert code == 1
    assert err.count("\n") == 1 and "disk controller on fire" in err and "--debug" in err
    with pytest.raises(RuntimeError, match="on fire"):
        run_cli(monkeypatch, capsys, "models", "--debug")
    monkeypatch.delenv("LEANNET_DEBUG", raising=False)


def test_os_errors_are_one_line(monkeypatch, capsys):
    def full():
        raise OSError(28, "No space left on device", "runs/x/weights.safetensors")

    monkeypatch.setattr(leannet.models, "list_models", full)
    code, _, err = run_cli(monkeypatch, capsys, "models")
    assert code == 2 and err.count("\n") == 1
    assert "No space left on device" in err and "runs/x/weights.safetensors" in err
