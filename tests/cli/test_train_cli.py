"""`leannet train`, `eval`, `data` and `demo` through the real CLI entry point, on real digits."""
from __future__ import annotations

import json
import sys

import pytest

from leannet.cli import main
from leannet.jobs.demo import DemoConfig, run_demo
from tests.helpers import run_cli as cli


TRAIN = ("train", "--model", "simple_cnn", "--data", "digits", "--image-size", "8",
         "--epochs", "2", "--batch-size", "64", "--optimizer", "adamw", "--lr", "0.01")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One small training run shared by the tests below."""
    out = tmp_path_factory.mktemp("run") / "base"
    mp = pytest.MonkeyPatch()
    mp.setattr(sys, "argv", ["leannet", *TRAIN, "--out", str(out)])
    mp.setenv("OMP_NUM_THREADS", "1")
    try:
        main()
    except SystemExit as exit_:
        assert exit_.code == 0
    finally:
        mp.undo()
    return out


def test_train_writes_result_history_and_best_model(trained):
    result = json.loads((trained / "result.json").read_text())
    assert result["model"] == "simple_cnn" and result["data"] == "digits"
    assert result["accuracy"] > 0.7 and result["epochs"] == 2
    assert result["params"] > 1000 and result["macs"] > 10000 and result["latency_ms"] > 0
    history = [json.loads(line) for line in (trained / "history.jsonl").read_text().splitlines()]
    # the best epoch is chosen on validation; the top-level number is the test split's
    assert len(history) == 2 and result["metrics"]["accuracy"] == max(r["accuracy"] for r in history)
    assert result["main_metric_split"] == "test" and result["test_metrics"]["accuracy"] == \
        result["accuracy"]
    config = json.loads((trained / "model" / "config.json").read_text())
    assert config["data"] == {"name": "digits", "root": None}
    assert config["input_shape"] == [1, 8, 8]


def test_eval_matches_training_and_writes_only_where_asked(trained, tmp_path, monkeypatch, capsys):
    before = sorted(p.name for p in (trained / "model").iterdir())
    code, out, err = cli(monkeypatch, capsys, "eval", str(trained / "model"),
                         "--out", str(tmp_path / "ev"))
    assert code == 0, err
    result = json.loads((tmp_path / "ev" / "result.json").read_text())
    trained_result = json.loads((trained / "result.json").read_text())
    assert result["accuracy"] == trained_result["accuracy"] and result["samples"] == 360
    assert "accuracy" in out
    assert sorted(p.name for p in (trained / "model").iterdir()) == before
    code, _, err = cli(monkeypatch, capsys, "eval", str(trained / "model"), "--data", "mnist",
                       "--data-root", str(tmp_path / "missing"))
    assert code == 2 and "does not exist" in err


def test_train_refuses_bad_input_without_writing(trained, tmp_path, monkeypatch, capsys):
    out = tmp_path / "new"
    cases = [(("--epochs", "0"), "--epochs must be at least 1"),
             (("--epochs", "-3"), "--epochs must be at least 1"),
             (("--model", "lenet"), "unknown model 'lenet'; expected one of"),
             (("--data", "svhn"), "unknown data source 'svhn'; expected one of")]
    for extra, message in cases:
        code, _, err = cli(monkeypatch, capsys, *TRAIN, "--out", str(out), *extra)
        assert code == 2 and message in err and err.count("\n") == 1, err
        assert not out.exists()
    code, _, err = cli(monkeypatch, capsys, *TRAIN, "--out", str(trained))
    assert code == 2 and "already exists" in err and "--force" in err


def test_data_lists_sources_and_availability(monkeypatch, capsys):
    code, out, _ = cli(monkeypatch, capsys, "data")
    assert code == 0
    for name in ("digits", "mnist", "fashion-mnist", "cifar10", "imagefolder:PATH"):
        assert name in out
    digits_row = next(line for line in out.splitlines() if "digits" in line and "bundled" in line)
    assert "yes" in digits_row


def test_demo_pipeline_writes_result(tmp_path):
    config = DemoConfig(epochs=1, width_mult=0.25, prune_steps=1, finetune_epochs=1,
                        max_drop=1.0, criterion="l1", deploy=False)  # int8: tests/deploy/test_demo.py
    result = run_demo(tmp_path / "demo", config=config, progress=False)
    saved = json.loads((tmp_path / "demo" / "result.json").read_text())
    for key in ("model", "data", "accuracy", "params", "macs", "latency_ms", "baseline",
                "final", "onnx", "report"):
        assert key in saved
    assert saved["final"]["macs"] / saved["baseline"]["macs"] == pytest.approx(0.5, abs=0.03)
    assert saved["final"]["params"] < saved["baseline"]["params"]
    assert saved["onnx"]["max_abs_diff"] < 1e-3 and saved["onnx"]["max_rel_diff"] < 1e-4
    import onnx
    onnx.checker.check_model(saved["onnx"]["path"])
    assert "## Steps" in (tmp_path / "demo" / "pruned" / "report.md").read_text()
    assert saved == json.loads(json.dumps(result))
    assert saved["model"] == "mobilenet_v2" and saved["data"] == "digits"
    assert (tmp_path / "demo" / "model" / "weights.safetensors").is_file()
    from leannet.errors import LeannetError
    with pytest.raises(LeannetError, match="already exists"):
        run_demo(tmp_path / "demo", config=DemoConfig(epochs=1))
