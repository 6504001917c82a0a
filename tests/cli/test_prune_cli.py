"""`leannet prune` and `leannet sensitivity` end to end on real digits, kill -9 and --resume."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

import leannet
from tests.helpers import run_cli
from leannet.measure import count_macs


def _cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """Run `leannet ARGS` in-process; (exit code, stdout + stderr)."""
    code, out, err = run_cli(monkeypatch, capsys, *args)
    return code, out + err


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    """A small CNN trained for a few epochs on the bundled digits, as a model folder."""
    from leannet.data import get_source
    from leannet.data.loaders import make_loaders
    from leannet.train.fit import fit
    from leannet.train.build import remember_data
    from leannet.train.tasks import ClassificationTask

    source = get_source("digits", image_size=16)
    model = leannet.create_model("simple_cnn", channels=[16, 32], hidden=32, image_size=16)
    train, val = make_loaders(source, 64)
    fit(model, train, val, ClassificationTask(), 3, lr=0.05, progress=False)
    remember_data(model, "digits", None)  # as `leannet train` does: prune defaults to it
    return leannet.save(model, tmp_path_factory.mktemp("base") / "model")


PRUNE = ["--target-macs", "0.5", "--steps", "2", "--max-drop", "0.05", "--finetune-epochs", "1"]


def test_prune_writes_model_result_and_report(base_model, tmp_path, monkeypatch, capsys):
    code, text = _cli(monkeypatch, capsys, "prune", str(base_model), *PRUNE,
                      "--out", str(tmp_path / "run"))
    assert code == 0, text
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    for key in ("metric", "params", "macs", "size_bytes", "latency_ms"):
        assert key in result["baseline"] and key in result["final"]
    assert result["target_reached"] and len(result["steps"]) >= 2
    assert 0.4 <= result["final"]["macs"] / result["baseline"]["macs"] <= 0.52  # coarse layers
    assert result["baseline"]["metric"] - result["final"]["metric"] <= 0.05
    assert result["final"]["size_bytes"] < result["baseline"]["size_bytes"]
    pruned = leannet.load(tmp_path / "run" / "model")
    assert count_macs(pruned, (1, 1, 16, 16)) == result["final"]["macs"]
    report = (tmp_path / "run" / "report.md").read_text()
    assert "rolled back" in report or "accepted" in report
    assert (tmp_path / "run" / "metric_vs_macs.png").stat().st_size > 1000


def test_sensitivity_then_prune_with_its_layer_ratios(base_model, tmp_path, monkeypatch, capsys):
    code, text = _cli(monkeypatch, capsys, "sensitivity", str(base_model), "--ratios", "0.3,0.6",
                      "--max-drop", "0.05", "--out", str(tmp_path / "sens"))
    assert code == 0, text
    sensitivity = json.loads((tmp_path / "sens" / "sensitivity.json").read_text())
    assert sensitivity["ratios"] == [0.3, 0.6]
    assert set(sensitivity["groups"]) == {"features.0.0", "features.2.0", "fc1"}
    for name, values in sensitivity["groups"].items():
        keep = sensitivity["layer_keep"][name]
        safe = [r for r, v in zip([0.3, 0.6], values) if sensitivity["baseline"] - v <= 0.05]
        assert keep == pytest.approx(1 - max(safe) if safe else 1.0)
    code, text = _cli(monkeypatch, capsys, "prune", str(base_model), "--target-macs", "0.8",
                      "--steps", "1", "--max-drop", "0.2", "--sensitivity",
                      str(tmp_path / "sens"), "--out", str(tmp_path / "run"))
    assert code == 0, text
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    fragile = [n for n, k in sensitivity["layer_keep"].items() if k == 1.0 and n != "fc1"]
    for name in fragile:  # a layer that cannot lose channels keeps them all
        assert result["channels_after"][name] == result["channels_before"][name]
    assert "Sensitivity" in (tmp_path / "run" / "report.md").read_text()


@pytest.mark.parametrize("args,message", [
    (["--target-macs", "1.5"], "impossible or already met"),
    (["--target-macs", "0.5", "--max-drop", "-0.1"], "--max-drop must be >= 0"),
    (["--target-macs", "0.5", "--max-drop", "left=0.01"], "--max-drop names left"),
    (["--target-macs", "0.5", "--criterion", "magic"], "unknown criterion"),
    (["--target-macs", "0.5", "--data", "cifar10", "--data-root", "/nonexistent"],
     "does not exist"),
    (["--target-macs", "0.5", "--resume"], "holds no interrupted run"),
])
def test_bad_requests_fail_in_one_line_and_write_nothing(base_model, tmp_path, monkeypatch,
                                                         capsys, args, message):
    code, text = _cli(monkeypatch, capsys, "prune", str(base_model), *args,
                      "--out", str(tmp_path / "run"))
    assert code == 2 and message in text
    assert "Traceback" not in text and len(text.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_a_data_source_that_does_not_fit_the_model(base_model, tmp_path, monkeypatch, capsys):
    from PIL import Image

    for label in ("cats", "dogs"):
        (tmp_path / "rgb" / label).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (16, 16), (40 * i, 0, 0)).save(tmp_path / "rgb" / label / f"{i}.png")
    code, text = _cli(monkeypatch, capsys, "prune", str(base_model), "--target-macs", "0.5",
                      "--data", f"imagefolder:{tmp_path / 'rgb'}", "--out", str(tmp_path / "run"))
    assert code == 2 and "has 3 channel(s) but the model" in text
    assert not (tmp_path / "run").exists()


def test_not_a_model_folder(tmp_path, monkeypatch, capsys):
    code, text = _cli(monkeypatch, capsys, "prune", str(tmp_path), "--target-macs", "0.5",
                      "--out", str(tmp_path / "run"))
    assert code == 2 and "not a leannet model folder" in text


def test_kill_9_mid_run_then_resume_matches_an_uninterrupted_run(base_model, tmp_path,
                                                                 monkeypatch, capsys):
    args = ["--target-macs", "0.4", "--steps", "3", "--max-drop", "1", "--seed", "3"]
    code, text = _cli(monkeypatch, capsys, "prune", str(base_model), *args,
                      "--out", str(tmp_path / "whole"))
    assert code == 0, text
    run = tmp_path / "killed"
    _start_and_kill(base_model, args, run, 2)  # after step 2 of 3; the taylor test: after step 1
    assert not (run / "result.json").exists()
    code, text = _cli(monkeypatch, capsys, "prune", str(base_model), *args, "--out", str(run),
                      "--resume")
    assert code == 0, text
    whole = json.loads((tmp_path / "whole" / "result.json").read_text())
    resumed = json.loads((run / "result.json").read_text())
    assert [s["metric"] for s in resumed["steps"]] == [s["metric"] for s in whole["steps"]]
    assert resumed["final"]["metric"] == whole["final"]["metric"]
    assert resumed["final"]["macs"] == whole["final"]["macs"]


def _weights(run):
    """The pruned model's tensors, to compare two runs bit for bit."""
    from safetensors.torch import load_file

    return load_file(str(run / "model" / "weights.safetensors"))


def _start_and_kill(base_model, args, run, after_steps):
    """Start `leannet prune` in a process and kill -9 it once `after_steps` attempts are saved."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.Popen([sys.executable, "-m", "leannet", "prune", str(base_model),
                                *args, "--out", str(run)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        state = run / "state.json"
        try:
            if state.is_file() and len(json.loads(state.read_text())["steps"]) >= after_steps:
                break
        except (json.JSONDecodeError, OSError):
            pass
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


TAYLOR = ["--criterion", "taylor", "--target-macs", "0.4", "--steps", "3", "--max-drop", "1",
          "--seed", "5", "--batch-size", "32"]


@pytest.fixture(scope="module")
def taylor_whole(base_model, tmp_path_factory):
    """An uninterrupted taylor run, the reference every resumed run must equal."""
    from leannet.cli import main

    run = tmp_path_factory.mktemp("taylor") / "whole"
    main(["prune", str(base_model), *TAYLOR, "--out", str(run)])  # exits only on failure
    assert (run / "result.json").is_file()
    return run


@pytest.fixture(scope="module")
def killed_once(base_model, tmp_path_factory):
    """A taylor run killed -9 after its first step; each test resumes its own copy."""
    run = tmp_path_factory.mktemp("taylor") / "killed"
    _start_and_kill(base_model, TAYLOR, run, 1)
    return run


def _copy_of(run, tmp_path):
    copy = tmp_path / "killed"
    shutil.copytree(run, copy)
    return copy


def test_a_killed_taylor_run_resumes_to_identical_weights(
        base_model, taylor_whole, killed_once, tmp_path, monkeypatch, capsys):
    """Killed after step 1 (the l1 test above kills after step 2): bit-identical weights."""
    run = _copy_of(killed_once, tmp_path)
    code, text = _cli(monkeypatch, capsys, "prune", str(base_model), *TAYLOR, "--out", str(run),
                      "--resume")
    assert code == 0, text
    whole = json.loads((taylor_whole / "result.json").read_text())
    resumed = json.loads((run / "result.json").read_text())
    assert [s["metric"] for s in resumed["steps"]] == [s["metric"] for s in whole["steps"]]
    assert (resumed["final"]["macs"], resumed["final"]["params"]) == \
        (whole["final"]["macs"], whole["final"]["params"])
    a, b = _weights(taylor_whole), _weights(run)
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)


def test_resume_with_other_settings_is_refused(base_model, killed_once, tmp_path, monkeypatch,
                                              capsys):
    run = _copy_of(killed_once, tmp_path)
    other = [a if a != "32" else "16" for a in TAYLOR]  # another --batch-size
    code, text = _cli(monkeypatch, capsys, "prune", str(base_model), *other, "--out", str(run),
                      "--resume")
    assert code == 2 and "different run" in text


def test_resume_refuses_a_state_that_points_outside_the_run(base_model, killed_once, tmp_path,
                                                           monkeypatch, capsys):
    run = _copy_of(killed_once, tmp_path)
    state = json.loads((run / "state.json").read_text())
    state["last_good"] = "../../elsewhere/model"
    (run / "state.json").write_text(json.dumps(state))
    code, text = _cli(monkeypatch, capsys, "prune", str(base_model), *TAYLOR, "--out", str(run),
                      "--resume")
    assert code == 2 and "not a checkpoint of this run" in text


def test_prune_refuses_an_out_folder_that_holds_its_input(base_model, monkeypatch, capsys):
    before = sorted(p.name for p in base_model.iterdir())
    for out in (base_model, base_model.parent):
        code, text = _cli(monkeypatch, capsys, "prune", str(base_model), *PRUNE, "--out",
                          str(out), "--force")
        assert code == 2 and "holds the model being pruned" in text
    assert sorted(p.name for p in base_model.iterdir()) == before


@pytest.mark.parametrize(("args", "message"), [
    (["--max-drop", "nan"], "finite"),
    (["--max-drop", "inf"], "finite"),
    (["--lr", "nan"], "finite"),
    (["--lr", "0"], "--lr must be"),
    (["--min-fraction", "1.5"], "--min-fraction"),
    (["--latency-tradeoff", "nan"], "--latency-tradeoff must be a finite number"),
    (["--latency-tradeoff", "-1"], "--latency-tradeoff must be in [0, 4]"),
    (["--latency-tradeoff", "0"], "--latency-tradeoff only shapes a --target-latency"),
    (["--round-to", "0"], "--round-to"),
    (["--target-macs", "0.001", "--max-drop", "1"], "cannot be reached"),
])
def test_guard_and_option_values_are_checked_before_any_work(base_model, tmp_path, monkeypatch,
                                                             capsys, args, message):
    defaults = dict(zip(PRUNE[::2], PRUNE[1::2]))
    defaults.update(dict(zip(args[::2], args[1::2])))
    flat = [x for kv in defaults.items() for x in kv]
    code, text = _cli(monkeypatch, capsys, "prune", str(base_model), *flat, "--out",
                      str(tmp_path / "run"))
    assert code == 2 and message in text, text
    assert not (tmp_path / "run").exists()
