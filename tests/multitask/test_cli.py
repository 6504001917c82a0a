"""`leannet train --data multi-digits --sharing ...` end to end through the real CLI entry point."""
import json

import pytest

import leannet
from tests.helpers import run_cli as cli




TRAIN = ("train", "--model", "simple_cnn", "--data", "multi-digits", "--epochs", "1",
         "--batch-size", "128")


@pytest.mark.parametrize("sharing", [("hard",), ("soft", "--penalty", "l2", "--strength", "0.01"),
                                     ("soft", "--penalty", "trace", "--weighting", "dwa")])
def test_train_multitask_from_the_cli(monkeypatch, capsys, tmp_path, sharing):
    out = tmp_path / "run"
    code, stdout, _ = cli(monkeypatch, capsys, *TRAIN, "--sharing", *sharing, "--out", str(out))
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    assert result["main_metric"] == "mean_accuracy"
    for task in ("left", "right"):
        assert 0.1 < result["metrics"][f"{task}/accuracy"] <= 1.0  # above chance after 1 epoch
        assert f"{task}/loss" in result["metrics"] and f"{task}/train_loss" in result["metrics"]
    assert result["params"] > 0 and result["macs"] > 0
    assert "left/accuracy" in stdout
    model = leannet.load(out / "model")
    expected = {"hard": "hard_sharing", "soft": "soft_sharing"}[sharing[0]]
    assert model.leannet_config["name"] == expected
    if sharing[0] == "soft":
        assert model.penalty_name == sharing[2]


def test_cli_bad_multitask_input_is_one_line(monkeypatch, capsys, tmp_path):
    for extra, message in (
            (("--sharing", "soft", "--penalty", "l1"), "unknown soft-sharing penalty 'l1'"),
            (("--sharing", "soft", "--strength", "-1"), "strength must be a number >= 0"),
            (("--sharing", "medium"), "unknown sharing 'medium'"),
            (("--sharing", "hard", "--weighting", "famo"), "unknown loss weighting")):
        code, _, err = cli(monkeypatch, capsys, *TRAIN, *extra, "--out", str(tmp_path / "bad"))
        assert code == 2 and message in err and err.strip().count("\n") == 0
        assert not (tmp_path / "bad").exists()  # bad input leaves no output behind
    code, _, err = cli(monkeypatch, capsys, "train", "--model", "simple_cnn", "--data", "digits",
                       "--sharing", "hard", "--out", str(tmp_path / "bad2"))
    assert code == 2 and "not multi-task" in err


def test_prune_soft_sharing_from_the_cli_keeps_columns_tied(monkeypatch, capsys, tmp_path):
    code, _, _ = cli(monkeypatch, capsys, *TRAIN, "--sharing", "soft", "--out",
                     str(tmp_path / "soft"))
    assert code == 0
    code, _, err = cli(monkeypatch, capsys, "prune", str(tmp_path / "soft" / "model"), "--data",
                       "digits", "--target-macs", "0.5", "--out", str(tmp_path / "wrong"))
    assert code == 2 and "is multi-task (tasks left, right)" in err
    assert not (tmp_path / "wrong").exists()
    code, _, err = cli(monkeypatch, capsys, "prune", str(tmp_path / "soft" / "model"), "--data",
                       "multi-digits", "--criterion", "l1", "--target-macs", "0.5", "--steps", "1",
                       "--finetune-epochs", "1", "--max-drop", "left=1,right=1",
                       "--out", str(tmp_path / "pruned"))
    assert code == 0, err
    result = json.loads((tmp_path / "pruned" / "result.json").read_text())
    assert result["target_reached"] and result["steps"][0]["status"] == "accepted"
    assert set(result["steps"][0]["metrics"]) == {"left", "right"}  # one guard per task
    model = leannet.load(tmp_path / "pruned" / "model")
    assert model.leannet_config["plans"][0]["meta"]["tied_columns"] == ["left", "right"]
    shapes = [{k: v.shape for k, v in model.columns[t].named_parameters()} for t in model.columns]
    assert shapes[0] == shapes[1]
