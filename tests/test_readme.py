"""Every `leannet ...` line in README.md runs as written, in order, through the real entry point.

Only the amount of work is made small: one epoch, at most two pruning steps, and `DIR` becomes a
folder holding the first 600 images of the real Fashion-MNIST (an epoch of all 60,000 takes
minutes here) beside the real COCO128; lines that need DIR skip when the benchmark data is
absent. `leannet demo` runs its training stage only (`--no-prune --no-deploy`): the pipeline has
its own test (tests/cli/test_train_cli.py::test_demo_pipeline_writes_result), and so has its int8
stage (tests/deploy/test_demo.py).
"""
import gzip
import re
import shlex
from pathlib import Path

import numpy as np


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
    if out[0] == "demo":  # its prune and int8 stages have their own tests (see the docstring)
        out += ["--epochs", "1", "--no-prune", "--no-deploy"]
    if out[0] == "bench":  # every runtime and precision still built and checked, fewer timed runs
        out += ["--runs", "10"]
    return out


def _idx_head(path: Path, count: int) -> bytes:
    """The first `count` records of an IDX file, with the header's count rewritten."""
    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3]
    dims = np.frombuffer(raw[4:4 + 4 * ndim], dtype=">u4").copy()
    record = int(np.prod(dims[1:])) if ndim > 1 else 1
    dims[0] = count
    return raw[:4] + dims.astype(">u4").tobytes() + raw[4 + 4 * ndim:4 + 4 * ndim + count * record]


def small_data_dir(shared: Path, into: Path) -> Path:
    """DIR for the README lines: a 600-image Fashion-MNIST, 240 + 60 CIFAR-10 images and the real
    COCO128 (all real images)."""
    fashion = into / "fashion-mnist"
    fashion.mkdir(parents=True)
    for name, count in (("train-images-idx3-ubyte", 600), ("train-labels-idx1-ubyte", 600),
                        ("t10k-images-idx3-ubyte", 200), ("t10k-labels-idx1-ubyte", 200)):
        data = _idx_head(shared / "fashion-mnist" / f"{name}.gz", count)
        (fashion / f"{name}.gz").write_bytes(gzip.compress(data))
    (into / "coco128").symlink_to(shared / "coco128")
    for split, count in (("train", 24), ("test", 6)):  # real CIFAR-10 images, a few per class
        for folder in sorted((shared / "cifar10" / split).iterdir()):
            target = into / "cifar10" / split / folder.name
            target.mkdir(parents=True)
            for image in sorted(folder.iterdir())[:count]:
                (target / image.name).symlink_to(image)
    return into


def test_the_readme_has_the_commands_it_promises():
    commands = readme_commands()
    names = {shlex.split(c)[1] for c in commands}
    assert {"demo", "train", "eval", "prune", "export", "bench", "report", "sensitivity",
            "predict", "anchors", "models", "data"} <= names
    assert not any("..." in c for c in commands), "a README line that cannot run as written"


def test_every_readme_command_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEANNET_CACHE", str(tmp_path / "cache"))
    shared = shared_data()
    data = small_data_dir(shared, tmp_path / "data") if shared.is_dir() else None
    ran, skipped = [], []
    for command in readme_commands():
        if "DIR" in command and data is None:
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
