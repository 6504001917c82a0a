"""Every `leannet ...` line in README.md runs as written, in order, through the real entry point.

Only epochs and steps are made small (the README's lines train for real); `DIR` becomes the
benchmark data folder beside the checkout, and lines that need it skip when it is absent.
`leannet demo` has its own test (tests/cli/test_train_cli.py) and runs here with one epoch.
"""
import re
import shlex
from pathlib import Path


from tests.helpers import run_cli, shared_data

README = Path(__file__).resolve().parents[1] / "README.md"
SMALL = {"--epochs": "1", "--steps": "2", "--finetune-epochs": "1"}


def readme_commands() -> list[str]:
    """`leannet` command lines from the README's bash blocks, continuation lines joined."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S):
        text = block.replace("\\\n", " ")
        for line in text.splitlines():
            line = line.split(" #")[0].strip()
            for part in line.split("&&"):
                part = part.strip()
                if part.startswith("leannet"):
                    commands.append(part)
    return commands


def shrink(args: list[str]) -> list[str]:
    """The same command with one epoch and at most two steps."""
    out = list(args)
    for i, arg in enumerate(out[:-1]):
        if arg in SMALL:
            out[i + 1] = SMALL[arg]
    if out[0] == "demo" and "--epochs" not in out:
        out += ["--epochs", "1"]
    return out


def test_the_readme_has_the_commands_it_promises():
    commands = readme_commands()
    names = {shlex.split(c)[1] for c in commands}
    assert {"demo", "train", "eval", "prune", "export", "bench", "report", "sensitivity",
            "predict", "anchors", "models", "data"} <= names
    assert not any("..." in c for c in commands), "a README line that cannot run as written"


def test_every_readme_command_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEANNET_CACHE", str(tmp_path / "cache"))
    data = shared_data()
    ran, skipped = [], []
    for command in readme_commands():
        if "DIR" in command and not data.is_dir():
            skipped.append(command)
            continue
        args = shrink(shlex.split(command.replace("DIR", str(data)))[1:])
        code, out, err = run_cli(monkeypatch, capsys, *args)
        assert code == 0, f"`{command}` exited {code}: {err.strip()[-400:]}"
        assert "Traceback" not in out + err
        ran.append(command)
    assert len(ran) >= 12, (ran, skipped)
    assert (tmp_path / "runs" / "pruned" / "result.json").is_file()
    assert (tmp_path / "runs" / "pruned" / "report.md").is_file()
