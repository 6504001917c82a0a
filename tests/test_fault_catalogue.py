"""A catalogue of bad inputs and faults: each gives one clear line and exit 2, or works correctly.

Every case runs through the real entry point (`leannet.cli.main`) or the public API. What each
CLI case must show: exit code 2, one line on stderr starting `error:`, no traceback, no output
folder left behind, and every file that was there before unchanged. API cases must raise
LeannetError (never another exception type) with the expected words.

`python -m pytest tests/test_fault_catalogue.py -q` prints the count; the closing note of the
reliability issue gives it by category.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import leannet
from leannet.errors import LeannetError
from tests.helpers import run_cli


# --------------------------------------------------------------------------- shared fixtures
@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A small trained model folder (digits, 16 px) that cases copy before spoiling."""
    from leannet.data import get_source
    from leannet.data.loaders import make_loaders
    from leannet.train.build import remember_data
    from leannet.train.fit import fit
    from leannet.train.tasks import ClassificationTask

    source = get_source("digits", image_size=16)
    model = leannet.create_model("simple_cnn", channels=[8, 16], hidden=16, image_size=16)
    train, val = make_loaders(source, 64)
    fit(model, train, val, ClassificationTask(), 1, lr=0.05, progress=False)
    remember_data(model, "digits", None)
    return leannet.save(model, tmp_path_factory.mktemp("base") / "model")


def snapshot(root: Path) -> dict[str, str]:
    """Every file under `root` with a hash of its bytes (links and FIFOs by their kind)."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            found[str(path)] = "special"
        elif path.is_file():
            found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


# --------------------------------------------------------------------------- case builders
# A case: (id, setup(work, base) -> argv list). The argv may use OUT for the output folder.
Setup = Callable[[Path, Path], list[str]]
CLI_CASES: list[tuple[str, Setup, str]] = []


def cli(case_id: str, expected: str = "") -> Callable[[Setup], Setup]:
    def add(setup: Setup) -> Setup:
        CLI_CASES.append((case_id, setup, expected))
        return setup
    return add


def fixed(case_id: str, argv: list[str], expected: str = "") -> None:
    CLI_CASES.append((case_id, lambda work, base: list(argv), expected))


def model_copy(work: Path, base: Path) -> Path:
    dest = work / "m"
    shutil.copytree(base, dest)
    return dest


# usage: unknown commands and options, missing arguments, values of the wrong type
for word in ("trian", "prun", "exprot", "Train", "--version-info"):
    fixed(f"usage-unknown-{word}", [word])
for command in ("train", "eval", "prune", "export", "bench", "report", "sensitivity", "predict",
                "anchors", "models", "data", "quantize", "demo"):
    fixed(f"usage-bad-option-{command}", [command, "--no-such-option", "1"], "No such option")
for command in ("eval", "prune", "export", "bench", "report", "sensitivity", "predict",
                "quantize"):
    fixed(f"usage-missing-argument-{command}", [command], "Missing argument")
for option in ("--epochs", "--batch-size", "--seed", "--image-size", "--workers"):
    for value in ("abc", "1.5", ""):
        fixed(f"usage-train{option}={value!r}", ["train", option, value, "--out", "OUT"])
fixed("usage-anchors-k-text", ["anchors", "--data", "digits-detect", "-k", "many"])
fixed("usage-prune-steps-text", ["prune", "x", "--steps", "two"])

# option values: NaN, infinities, negatives and zeros where they make no sense
for option in ("--lr", "--weight-decay", "--warmup-epochs", "--label-smoothing", "--width-mult"):
    for value in ("nan", "inf", "-inf", "-1"):
        fixed(f"train{option}={value}", ["train", option, value, "--epochs", "1", "--out", "OUT"])
for value in ("nan", "inf", "-inf", "-1"):
    fixed(f"train--strength={value}", ["train", "--data", "multi-digits", "--sharing", "soft",
                                       "--strength", value, "--epochs", "1", "--out", "OUT"])
for option, value in (("--epochs", "0"), ("--epochs", "-3"), ("--batch-size", "0"),
                      ("--image-size", "2"), ("--image-size", "100000"), ("--workers", "-1"),
                      ("--label-smoothing", "1"), ("--seed", "-1")):
    fixed(f"train{option}={value}", ["train", option, value, "--out", "OUT"])
for device in ("cuda", "cuda:7", "tpu", "gpu0", "mps"):
    fixed(f"train-device-{device}", ["train", "--device", device, "--epochs", "1", "--out", "OUT"],
          "device")
for name, argv in (("model", ["--model", "resnet9000"]), ("data", ["--data", "no-such-data"]),
                   ("optimizer", ["--optimizer", "adam"]), ("task", ["--task", "segmentify"]),
                   ("head", ["--task", "detect", "--data", "digits-detect", "--head", "v9"]),
                   ("sharing", ["--data", "multi-digits", "--sharing", "medium"])):
    fixed(f"train-unknown-{name}", ["train", *argv, "--epochs", "1", "--out", "OUT"])


def prune_case(case_id: str, args: list[str], expected: str = "") -> None:
    CLI_CASES.append((case_id, lambda work, base: ["prune", str(model_copy(work, base)), *args,
                                                   "--out", "OUT"], expected))


for kind in ("macs", "params", "channels", "latency"):
    for value in ("0", "1.5", "nan", "-0.5", "inf"):
        prune_case(f"prune-target-{kind}={value}", [f"--target-{kind}", value])
prune_case("prune-no-target", [], "exactly one")
prune_case("prune-two-targets", ["--target-macs", "0.5", "--target-params", "0.5"], "exactly one")
for value in ("nan", "inf", "-0.1", "left=0.01", "a=b", "0.1,0.2", ""):
    prune_case(f"prune-max-drop={value!r}", ["--target-macs", "0.5", "--max-drop", value])
for option, value in (("--steps", "0"), ("--steps", "-1"), ("--steps", "1000"),
                      ("--round-to", "0"), ("--min-fraction", "nan"), ("--min-fraction", "2"),
                      ("--lr", "nan"), ("--lr", "0"), ("--lr", "-1"), ("--finetune-epochs", "-1"),
                      ("--criterion", "l3"), ("--criterion", ""), ("--schedule", "cosine"),
                      ("--optimizer", "adam"), ("--task-weights", "left"),
                      ("--task-weights", "left=nan"), ("--batch-size", "0"), ("--seed", "-5"),
                      ("--data", "no-such-data"), ("--data", "imagefolder:/no/such/place")):
    prune_case(f"prune{option}={value!r}", ["--target-macs", "0.5", option, value])
prune_case("prune-impossible-target", ["--target-macs", "0.0001", "--max-drop", "1"],
           "cannot be reached")
prune_case("prune-resume-nothing", ["--target-macs", "0.5", "--resume"], "no interrupted run")
prune_case("prune-sensitivity-missing", ["--target-macs", "0.5", "--sensitivity", "/no/such"],
           "sensitivity")


@cli("prune-sensitivity-corrupt", "sensitivity")
def _(work, base):
    (work / "sens").mkdir()
    (work / "sens" / "sensitivity.json").write_text('{"layer_keep": {"a": "lots"}, "sizes": {}}')
    return ["prune", str(model_copy(work, base)), "--target-macs", "0.5", "--sensitivity",
            str(work / "sens"), "--out", "OUT"]


@cli("prune-sensitivity-nan", "sensitivity")
def _(work, base):
    (work / "sens").mkdir()
    (work / "sens" / "sensitivity.json").write_text(
        '{"layer_keep": {"a": NaN}, "sizes": {"a": 4}}')
    return ["prune", str(model_copy(work, base)), "--target-macs", "0.5", "--sensitivity",
            str(work / "sens"), "--out", "OUT"]


@cli("prune-out-is-input", "holds the model being pruned")
def _(work, base):
    model = model_copy(work, base)
    return ["prune", str(model), "--target-macs", "0.5", "--out", str(model), "--force"]


@cli("prune-out-is-parent-of-input", "holds the model being pruned")
def _(work, base):
    model = model_copy(work, base)
    return ["prune", str(model), "--target-macs", "0.5", "--out", str(work), "--force"]


@cli("prune-out-is-a-file", "not a folder")
def _(work, base):
    (work / "file.txt").write_text("keep me")
    return ["prune", str(model_copy(work, base)), "--target-macs", "0.5", "--out",
            str(work / "file.txt")]


@cli("prune-out-not-empty", "--force")
def _(work, base):
    (work / "OUT").mkdir()
    (work / "OUT" / "result.json").write_text('{"precious": 1}')
    return ["prune", str(model_copy(work, base)), "--target-macs", "0.5", "--out", "OUT"]


# model folders that are broken in every way a file can be
def spoiled(case_id: str, spoil: Callable[[Path], Any], expected: str = "",
            commands: tuple[str, ...] = ("eval", "prune", "export")) -> None:
    for command in commands:
        def setup(work: Path, base: Path, spoil=spoil, command=command) -> list[str]:
            model = model_copy(work, base)
            spoil(model)
            extra = {"prune": ["--target-macs", "0.5", "--out", "OUT"],
                     "export": ["--out", "OUT"], "eval": []}[command]
            return [command, str(model), *extra]
        CLI_CASES.append((f"model-{case_id}-{command}", setup, expected))


def _config(edit: Callable[[dict], Any]) -> Callable[[Path], None]:
    def spoil(model: Path) -> None:
        config = json.loads((model / "config.json").read_text())
        edit(config)
        (model / "config.json").write_text(json.dumps(config))
    return spoil


spoiled("missing", lambda m: shutil.rmtree(m), "not a model folder")
spoiled("no-config", lambda m: (m / "config.json").unlink(), "config.json")
spoiled("config-not-json", lambda m: (m / "config.json").write_text("{name: simple"), "JSON")
spoiled("config-binary", lambda m: (m / "config.json").write_bytes(b"\xff\xfe\x00"), "JSON")
spoiled("config-array", lambda m: (m / "config.json").write_text("[1, 2]"), "lacks")
spoiled("config-unknown-model", _config(lambda c: c.update(name="resnet9000")), "resnet9000")
spoiled("config-bad-kwargs", _config(lambda c: c["kwargs"].update(channels="many")))
spoiled("config-plans-not-list", _config(lambda c: c.update(plans="all")))
spoiled("config-plan-garbage", _config(lambda c: c.update(plans=[{"groups": 7}])))
spoiled("no-weights", lambda m: (m / "weights.safetensors").unlink(), "weights")
spoiled("weights-garbage", lambda m: (m / "weights.safetensors").write_bytes(os.urandom(300)),
        "safetensors")
spoiled("weights-empty", lambda m: (m / "weights.safetensors").write_bytes(b""), "safetensors")
spoiled("weights-truncated", lambda m: (m / "weights.safetensors").write_bytes(
    (m / "weights.safetensors").read_bytes()[:200]), "safetensors")


def _wrong_shapes(model: Path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(model / "weights.safetensors"))
    key = next(k for k, v in tensors.items() if v.ndim == 4)
    tensors[key] = torch.zeros(1, 1, 1, 1)
    save_file(tensors, str(model / "weights.safetensors"))


spoiled("weights-wrong-shape", _wrong_shapes, "do not match")
spoiled("pickle-instead", lambda m: ((m / "config.json").unlink(),
                                     (m / "model.pt").write_bytes(b"\x80\x04K\x01.")), "pickle")

# data: sources, folders, images, YOLO files, IDX files
for name in ("nope", "imagefolder:", "yolo:", "multilabel-csv:", "IMAGEFOLDER:x"):
    fixed(f"data-unknown-{name}", ["train", "--data", name, "--epochs", "1", "--out", "OUT"])


def folder_case(case_id: str, build: Callable[[Path], None], expected: str = "") -> None:
    def setup(work: Path, base: Path) -> list[str]:
        root = work / "images"
        build(root)
        return ["train", "--data", f"imagefolder:{root}", "--image-size", "16", "--epochs", "1",
                "--model", "simple_cnn", "--out", "OUT"]
    CLI_CASES.append((f"folder-{case_id}", setup, expected))


def _classes(root: Path, names=("a", "b"), n=3) -> None:
    for c, name in enumerate(names):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", (12, 12), (80 * c + i, 10, 10)).save(root / name / f"{i}.png")


folder_case("missing", lambda r: None, "does not exist")
folder_case("empty", lambda r: r.mkdir(), "no class subfolders")
folder_case("one-class", lambda r: _classes(r, ("only",)), "one class")
folder_case("corrupt-png", lambda r: (_classes(r), (r / "a" / "bad.png").write_bytes(b"PNG?")),
            "cannot decode")
folder_case("zero-bytes", lambda r: (_classes(r), (r / "b" / "empty.jpg").write_bytes(b"")),
            "cannot decode")
folder_case("text-as-png", lambda r: (_classes(r), (r / "a" / "x.png").write_text("hello")),
            "cannot decode")
folder_case("fifo", lambda r: (_classes(r), os.mkfifo(r / "a" / "pipe.png")), "regular file")
folder_case("dangling-link", lambda r: (_classes(r), (r / "a" / "l.png").symlink_to(r / "gone")),
            "broken link")
folder_case("folder-named-png", lambda r: (_classes(r), (r / "a" / "dir.png").mkdir()),
            "regular file")
folder_case("val-unknown-class", lambda r: (_classes(r / "train"), _classes(r / "val", ("z", "a"))),
            "classes not in")


def yolo_folder(root: Path) -> Path:
    """A valid two-image YOLO set (train and val) with its data.yaml, for cases to spoil."""
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (64, 64)).save(root / "images" / split / f"{i}.jpg")
            (root / "labels" / split / f"{i}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\n"
                                    "names: ['a', 'b']\n")
    return root


def yolo_case(case_id: str, build: Callable[[Path], None], expected: str = "") -> None:
    def setup(work: Path, base: Path) -> list[str]:
        root = yolo_folder(work / "yolo")
        build(root)
        return ["anchors", "--data", f"yolo:{root / 'data.yaml'}", "-k", "2"]
    CLI_CASES.append((f"yolo-{case_id}", setup, expected))


yolo_case("python-tag", lambda r: (r / "data.yaml").write_text(
    "names: !!python/object/apply:os.system ['touch /tmp/leannet-pwned']\n"))
yolo_case("not-yaml", lambda r: (r / "data.yaml").write_text("names: [a, b\n  train: :::"))
yolo_case("no-names", lambda r: (r / "data.yaml").write_text("train: images/train\n"))
yolo_case("names-number", lambda r: (r / "data.yaml").write_text(
    "train: images/train\nval: images/val\nnames: 7\n"))
yolo_case("train-escapes", lambda r: (r / "data.yaml").write_text(
    "train: ../../../../etc\nval: images/val\nnames: [a]\n"))
yolo_case("label-nan", lambda r: (r / "labels" / "train" / "0.txt").write_text("0 nan 0.5 .2 .2\n"))
yolo_case("label-class-range", lambda r: (r / "labels" / "train" / "0.txt").write_text(
    "9 0.5 0.5 0.2 0.2\n"))
yolo_case("label-negative", lambda r: (r / "labels" / "train" / "0.txt").write_text(
    "0 0.5 0.5 -0.2 0.2\n"))
yolo_case("label-columns", lambda r: (r / "labels" / "train" / "0.txt").write_text("0 0.5\n"))
yolo_case("label-text", lambda r: (r / "labels" / "train" / "0.txt").write_text("cat dog\n"))


@cli("yolo-image-corrupt-when-training", "cannot")
def _(work, base):
    root = yolo_folder(work / "yolo")
    for i in (2, 3, 4, 5):  # enough training images that a carved validation split leaves batches
        Image.new("RGB", (64, 64)).save(root / "images" / "train" / f"{i}.jpg")
        (root / "labels" / "train" / f"{i}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    for i in range(6):  # every image corrupt: wherever the split puts it, training reads one
        (root / "images" / "train" / f"{i}.jpg").write_bytes(b"JFIF?")
    return ["train", "--data", str(root / "data.yaml"), "--task", "detect", "--head", "v1",
            "--image-size", "64", "--epochs", "1", "--batch-size", "2", "--out", "OUT"]


def idx_case(case_id: str, spoil: Callable[[Path], None], expected: str = "") -> None:
    def setup(work: Path, base: Path) -> list[str]:
        root = work / "mnist"
        root.mkdir()
        images = np.zeros((4, 28, 28), np.uint8)
        header = bytes([0, 0, 8, 3]) + (4).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
        for prefix in ("train", "t10k"):
            (root / f"{prefix}-images-idx3-ubyte").write_bytes(header + images.tobytes())
            (root / f"{prefix}-labels-idx1-ubyte").write_bytes(
                bytes([0, 0, 8, 1]) + (4).to_bytes(4, "big") + bytes([0, 1, 2, 3]))
        spoil(root)
        return ["train", "--data", "mnist", "--data-root", str(root), "--epochs", "1",
                "--out", "OUT"]
    CLI_CASES.append((f"idx-{case_id}", setup, expected))


idx_case("bad-magic", lambda r: (r / "train-images-idx3-ubyte").write_bytes(b"\x12\x34" * 20))
idx_case("truncated", lambda r: (r / "train-images-idx3-ubyte").write_bytes(
    (r / "train-images-idx3-ubyte").read_bytes()[:100]))
idx_case("count-mismatch", lambda r: (r / "train-labels-idx1-ubyte").write_bytes(
    bytes([0, 0, 8, 1]) + (3).to_bytes(4, "big") + bytes([0, 1, 2])))
idx_case("label-out-of-range", lambda r: (r / "train-labels-idx1-ubyte").write_bytes(
    bytes([0, 0, 8, 1]) + (4).to_bytes(4, "big") + bytes([0, 1, 2, 200])))
idx_case("empty-file", lambda r: (r / "t10k-images-idx3-ubyte").write_bytes(b""))

# outputs and other commands
fixed("eval-missing-model", ["eval", "/no/such/model"], "not a model folder")
fixed("report-missing-run", ["report", "/no/such/run"])
fixed("predict-missing-model", ["predict", "/no/such/model", "x.png", "--out", "OUT"])
fixed("anchors-k-zero", ["anchors", "--data", "digits-detect", "-k", "0"])
fixed("anchors-classify-source", ["anchors", "--data", "digits", "-k", "3"])
fixed("sensitivity-missing-model", ["sensitivity", "/no/such", "--out", "OUT"])


@cli("eval-result-exists", "--force")
def _(work, base):
    (work / "OUT").mkdir()
    (work / "OUT" / "result.json").write_text('{"command": "eval", "from": "an earlier run"}')
    return ["eval", str(model_copy(work, base)), "--out", "OUT"]


@cli("eval-over-a-prune-record", "record of a 'prune' run")
def _(work, base):
    (work / "OUT").mkdir()
    (work / "OUT" / "result.json").write_text('{"command": "prune", "steps": []}')
    return ["eval", str(model_copy(work, base)), "--out", "OUT", "--force"]


@cli("report-not-a-run")
def _(work, base):
    (work / "run").mkdir()
    (work / "run" / "result.json").write_text("[]")
    return ["report", str(work / "run")]


@cli("predict-with-a-classifier", "not a detector")
def _(work, base):
    (work / "x.png").write_bytes(b"not an image")
    return ["predict", str(model_copy(work, base)), str(work / "x.png"), "--out", "OUT"]


@cli("sensitivity-ratios-bad", "--ratios")
def _(work, base):
    return ["sensitivity", str(model_copy(work, base)), "--ratios", "0.5,nan", "--out", "OUT"]


@cli("sensitivity-ratio-one", "--ratios")
def _(work, base):
    return ["sensitivity", str(model_copy(work, base)), "--ratios", "1.0", "--out", "OUT"]


@cli("train-out-not-empty", "--force")
def _(work, base):
    (work / "OUT").mkdir()
    (work / "OUT" / "notes.txt").write_text("mine")
    return ["train", "--epochs", "1", "--out", "OUT"]


@cli("train-out-is-file", "not a folder")
def _(work, base):
    (work / "OUT").write_text("a file")
    return ["train", "--epochs", "1", "--out", "OUT"]


@pytest.mark.parametrize(("case_id", "setup", "expected"), CLI_CASES,
                         ids=[c[0] for c in CLI_CASES])
def test_cli_fault(case_id, setup, expected, base, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("LEANNET_CACHE", str(tmp_path / "cache"))
    argv = [a.replace("OUT", str(work / "OUT")) if a == "OUT" else a for a in setup(work, base)]
    before = snapshot(work)
    code, out, err = run_cli(monkeypatch, capsys, *argv)
    assert code == 2, f"exit {code}: {err or out}"
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in out + err
    assert expected in err, err
    assert snapshot(work) == before, "a failed command changed or left files"
    assert not Path("/tmp/leannet-pwned").exists()


# --------------------------------------------------------------------------- API faults
class Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
            return self.conv(x)
        return self.conv(-x)


def _small() -> nn.Module:
    return leannet.create_model("simple_cnn", channels=[4, 8], hidden=8, image_size=8)


X = torch.randn(2, 1, 8, 8)


def _iterate(**kwargs: Any) -> Any:
    options = {"evaluate": lambda m: 0.9, "max_drop": 0.01}
    options.update(kwargs)
    return leannet.iterative_prune(_small(), lambda m: None, options.pop("evaluate"),
                                   leannet.Target(macs=0.5), X, steps=2, **options)


API_CASES: list[tuple[str, Callable[[Path], Any], str]] = [
    ("target-nan", lambda p: leannet.Pruner(_small(), X).plan(leannet.Target(macs=float("nan"))),
     "fraction"),
    ("target-two", lambda p: leannet.Pruner(_small(), X).plan(leannet.Target(macs=.5, params=.5)),
     "exactly one"),
    ("target-above-one", lambda p: leannet.Pruner(_small(), X).plan(leannet.Target(macs=2)),
     "fraction"),
    ("target-round-zero", lambda p: leannet.Pruner(_small(), X).plan(
        leannet.Target(macs=.5, round_to=0)), "round_to"),
    ("criterion-unknown", lambda p: leannet.Pruner(_small(), X, criterion="l3"), "l3"),
    ("untraceable", lambda p: leannet.Pruner(Untraceable(), torch.randn(1, 3, 8, 8)), ""),
    ("plan-not-a-plan", lambda p: leannet.apply_plan(_small(), [1, 2], X), "plan"),
    ("plan-groups-not-dict", lambda p: leannet.apply_plan(_small(), {"groups": []}, X), "plan"),
    ("iterative-max-drop-nan", lambda p: _iterate(max_drop=float("nan")), "finite"),
    ("iterative-max-drop-negative", lambda p: _iterate(max_drop=-0.5), "max-drop"),
    ("iterative-max-drop-dict-nan", lambda p: _iterate(max_drop={"metric": float("inf")}),
     "finite"),
    ("iterative-evaluate-nan", lambda p: _iterate(evaluate=lambda m: float("nan")), "finite"),
    ("iterative-evaluate-text", lambda p: _iterate(evaluate=lambda m: "good"), "number"),
    ("iterative-steps-zero", lambda p: _iterate(steps=0) if False else
     leannet.iterative_prune(_small(), lambda m: None, lambda m: 1.0, leannet.Target(macs=.5), X,
                             steps=0), "steps"),
    ("save-plain-module", lambda p: leannet.save(nn.Conv2d(1, 1, 1), p / "m"), "create_model"),
    ("save-over-a-file", lambda p: ((p / "f").write_text("x"), leannet.save(_small(), p / "f")),
     "not a leannet model folder"),
    ("load-missing", lambda p: leannet.load(p / "nothing"), "not a model folder"),
    ("create-unknown", lambda p: leannet.create_model("resnet9000"), "resnet9000"),
]


@pytest.mark.parametrize(("case_id", "call", "expected"), API_CASES,
                         ids=[c[0] for c in API_CASES])
def test_api_fault(case_id, call, expected, tmp_path):
    with pytest.raises(LeannetError) as raised:
        call(tmp_path)
    assert expected in str(raised.value)
    assert "\n" not in str(raised.value).strip()


def test_a_nan_metric_after_fine_tuning_rolls_the_step_back():
    calls = iter([0.9] + [float("nan")] * 100)
    result = leannet.iterative_prune(_small(), lambda m: None, lambda m: next(calls),
                                     leannet.Target(macs=0.5), X, steps=2, max_drop=1.0)
    assert not result.target_reached
    assert all(s["status"] != "accepted" for s in result.steps)


# --------------------------------------------------------------------------- disks
def test_a_full_disk_mid_save_keeps_the_old_model_and_is_one_line(base, tmp_path, monkeypatch,
                                                                  capsys):
    import leannet.checkpoint as checkpoint

    target = tmp_path / "model"
    shutil.copytree(base, target)
    before = snapshot(target)

    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device", str(target / "weights.safetensors"))

    monkeypatch.setattr(checkpoint, "save_file", full)
    with pytest.raises(OSError):
        leannet.save(leannet.load(target), target)
    assert snapshot(target) == before
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging folder left


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_a_read_only_output_folder_is_one_line(tmp_path, monkeypatch, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, _, err = run_cli(monkeypatch, capsys, "train", "--epochs", "1", "--out",
                               str(locked / "run"))
    finally:
        locked.chmod(0o700)
    assert code == 2 and err.count("\n") == 1 and "ermission" in err
