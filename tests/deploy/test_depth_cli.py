"""Depth pruning in model folders and the CLI: a depth plan is recorded among the channel plans,
replayed on load (the folder reopens with equal outputs), and `leannet prune --remove-blocks N`
on a real digits model writes a folder that `eval` and `bench` reopen; bad requests are one
line and exit 2."""
from __future__ import annotations

import json
import re

import pytest
import torch

from leannet.checkpoint import load, save
from leannet.errors import LeannetError
from leannet.models import create_model
from leannet.prune import Pruner, Target
from leannet.prune.depth import plan_depth, remove_blocks, removable_blocks
from tests.deploy.conftest import train_digits_folder
from tests.helpers import run_cli as cli


def test_depth_then_width_plans_replay_on_load(tmp_path):
    torch.manual_seed(0)
    model = create_model("mobilenet_v2", num_classes=10, small_input=True, width_mult=0.5,
                         image_size=32).eval()
    x = torch.randn(4, 3, 32, 32)
    names = plan_depth(model, [x], 3)
    remove_blocks(model, names)
    pruner = Pruner(model, x[:2], criterion="l1")
    pruner.apply(pruner.plan(Target(macs=0.7, round_to=8)), verify=False)
    plans = model.leannet_config["plans"]
    assert plans[0] == {"depth": {"remove": names}} and "groups" in plans[1]
    expected = model(x)
    loaded = load(save(model, tmp_path / "m"))
    assert torch.equal(loaded(x), expected)  # blocks gone again, channels cut, same weights
    assert len(removable_blocks(loaded)) == 10 - 3
    assert json.loads((tmp_path / "m" / "config.json").read_text())["plans"][0] == plans[0]
    # a folder whose depth plan is damaged, or names a block the model lacks, is one line
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    for bad, message in (({"depth": {"remove": []}}, "non-empty 'remove' list"),
                         ({"depth": {"remove": ["features.1"]}}, "not residual blocks")):
        (tmp_path / "m" / "config.json").write_text(json.dumps({**config, "plans": [bad]}))
        with pytest.raises(LeannetError, match=message):
            load(tmp_path / "m")


@pytest.fixture(scope="module")
def residual_digits(tmp_path_factory):
    """ResNet-20 (7 blocks with an identity shortcut) on the bundled digits at 8 px (as
    scanned), two AdamW epochs: about 87% validation accuracy in a few CPU seconds."""
    return train_digits_folder(tmp_path_factory.mktemp("depth"), "resnet20", 2)


def test_prune_remove_blocks_cli_round_trip(residual_digits, tmp_path, monkeypatch, capsys):
    out = tmp_path / "shallow"
    code, text, err = cli(monkeypatch, capsys, "prune", str(residual_digits), "--remove-blocks",
                          "3", "--finetune-epochs", "1", "--lr", "0.001", "--optimizer", "adamw",
                          "--max-drop", "0.5", "--out", str(out))
    assert code == 0, err
    result = json.loads((out / "result.json").read_text())
    removed = result["removed_blocks"]
    assert len(removed) == 3 and result["target_reached"] and result["steps"][0]["status"] \
        == "accepted"
    assert result["baseline"]["metric"] > 0.75  # a model that learned, not chance
    assert result["final"]["macs"] < result["baseline"]["macs"]
    assert result["final"]["params"] < result["baseline"]["params"]
    assert f"removed blocks: {', '.join(removed)}" in text
    # every latency shown carries its spread and conditions, in the terminal and in report.md
    assert "latency (torch fp32, 1 thread, batch 1)" in text and text.count("(IQR ") == 2
    report = (out / "report.md").read_text()
    spread = r"[\d.]+ \([\d.]+-[\d.]+\)"
    assert re.search(rf"\| latency ms \(torch fp32, 1 thread, batch 1; median, IQR\) \| "
                     rf"{spread} \| {spread} \|", report)
    assert re.search(rf"\| 1 \| accepted \|.*\| {spread} \| [\d.]+ \|", report)
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["plans"] == [{"depth": {"remove": removed}}]
    model = load(out / "model")  # reopens: the blocks are gone again
    assert len(removable_blocks(model)) == len(removable_blocks(load(residual_digits))) - 3
    # eval reopens it and scores what the prune job measured on validation
    code, text, err = cli(monkeypatch, capsys, "eval", str(out / "model"), "--split", "val")
    assert code == 0, err
    assert f"{result['final']['metric']:.4f}" in text
    code, text, err = cli(monkeypatch, capsys, "bench", str(out / "model"), "--runtime",
                          "onnxruntime", "--precision", "fp32", "--runs", "3", "--out",
                          str(tmp_path / "b"))
    assert code == 0, err
    assert "(batch 1), 1 thread; latency: median (IQR), min-max" in text
    bench = json.loads((tmp_path / "b" / "result.json").read_text())
    assert bench["runtimes"][0]["parity"]["max_rel_diff"] < 1e-4
    assert bench["macs"] == result["final"]["macs"]


@pytest.mark.parametrize("args, message", [
    (("--remove-blocks", "8"), "has only 7 removable blocks"),
    (("--remove-blocks", "0"), "--remove-blocks"),
    (("--remove-blocks", "2", "--target-macs", "0.5"), "drop the --target-macs option"),
    (("--remove-blocks", "2", "--resume"), "--resume and --sensitivity do not apply"),
])
def test_remove_blocks_bad_input_is_one_line(residual_digits, tmp_path, monkeypatch, capsys,
                                             args, message):
    code, _, err = cli(monkeypatch, capsys, "prune", str(residual_digits), *args, "--out",
                       str(tmp_path / "p"))
    assert code == 2 and message in err and err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "p").exists()


def test_remove_blocks_on_a_model_without_blocks(digits_model, tmp_path, monkeypatch, capsys):
    code, _, err = cli(monkeypatch, capsys, "prune", str(digits_model), "--remove-blocks", "1",
                       "--out", str(tmp_path / "p"))
    assert code == 2 and "has no residual block with an identity shortcut" in err
    assert err.count("\n") == 1 and not (tmp_path / "p").exists()


def test_remove_blocks_guard_keeps_the_model_whole(residual_digits, tmp_path, monkeypatch,
                                                   capsys):
    """Every block removed without fine-tuning loses accuracy: a zero --max-drop rolls it back,
    and the saved model is the unpruned one."""
    out = tmp_path / "kept"
    code, text, err = cli(monkeypatch, capsys, "prune", str(residual_digits), "--remove-blocks",
                          "7", "--finetune-epochs", "0", "--max-drop", "0", "--out", str(out))
    assert code == 0, err
    result = json.loads((out / "result.json").read_text())
    step = result["steps"][0]
    assert step["status"] == "rolled_back" and step["metric"] < result["baseline"]["metric"]
    assert len(step["removed_blocks"]) == 7 and step["guard_broken_by"] == ["accuracy"]
    assert result["removed_blocks"] == [] and not result["target_reached"]
    assert result["final"]["macs"] == result["baseline"]["macs"]
    assert "removed blocks: none (the guard rolled it back)" in text
    assert json.loads((out / "model" / "config.json").read_text())["plans"] == []
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(load(out / "model")(x), load(residual_digits)(x))
