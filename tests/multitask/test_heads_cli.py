"""A three-task model (detect + segment + classify on one MobileNetV2) from the real CLI: train,
eval per task, predict (boxes, mask overlay, labels), prune with a guard per task, ONNX export
with one named output per task, a report with one plot per task. digits-detect is cut to 96
training canvases for speed."""
import json
from functools import partial

import pytest

from leannet.checkpoint import load
from leannet.data import registry
from leannet.data.detection import digits_detect
from leannet.data.images import read_image, write_image
from leannet.measure import count_macs
from leannet.report import task_series
from tests.helpers import run_cli as cli

TASKS = ("detect", "segment", "classify")


@pytest.fixture()
def small_digits(monkeypatch):
    """digits-detect with 96 training and 32 validation canvases (the real digits, fewer)."""
    entry = registry.list_sources()["digits-detect"]
    small = partial(digits_detect, num_train=96, num_val=32)
    monkeypatch.setitem(registry._SOURCES, "digits-detect",
                        registry.SourceEntry(small, entry.description, entry.available))


def test_three_task_model_end_to_end(monkeypatch, capsys, tmp_path, small_digits):
    run = tmp_path / "run"
    code, stdout, err = cli(monkeypatch, capsys, "train", "--model", "mobilenet_v2",
                            "--width-mult", "0.25", "--data", "digits-detect", "--image-size", "64",
                            "--tasks", ",".join(TASKS), "--epochs", "2", "--batch-size", "16",
                            "--weighting", "pcgrad", "--out", str(run))
    assert code == 0, err
    result = json.loads((run / "result.json").read_text())
    metrics = result["metrics"]
    for key in ("detect/map50", "segment/miou", "segment/pixel_accuracy", "classify/accuracy"):
        assert 0.0 <= metrics[key] <= 1.0
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    for task in TASKS:  # every head learns: its own training loss falls from epoch 1 to 2
        assert history[1][f"{task}/train_loss"] < history[0][f"{task}/train_loss"], task
    assert "classify/accuracy" in stdout
    code, stdout, err = cli(monkeypatch, capsys, "report", str(run))  # per task, per epoch
    assert code == 0, err
    for task in TASKS:
        assert (run / f"task_{task}.png").read_bytes()[:4] == b"\x89PNG"
    model = load(run / "model")
    assert model.leannet_config["name"] == "multi_head" and model.task_names == list(TASKS)

    code, stdout, err = cli(monkeypatch, capsys, "eval", str(run / "model"), "--out",
                            str(tmp_path / "eval"))
    assert code == 0, err
    evaluated = json.loads((tmp_path / "eval" / "result.json").read_text())["metrics"]
    reported = result.get("test_metrics") or metrics  # eval scores the split train reports on
    for key in ("detect/map50", "segment/miou", "classify/accuracy"):
        assert evaluated[key] == pytest.approx(reported[key], abs=1e-6)  # same model, same data

    source = registry.get_source("digits-detect", image_size=64)
    image = write_image(tmp_path / "canvas.png", source.val.render(0)[0])
    code, stdout, err = cli(monkeypatch, capsys, "predict", str(run / "model"), str(image),
                            "--out", str(tmp_path / "pred"), "--conf", "0.0")
    assert code == 0, err
    entry = json.loads((tmp_path / "pred" / "predictions.json").read_text())["images"][0]
    assert set(entry["tasks"]) == set(TASKS)
    assert entry["tasks"]["detect"] and set(entry["tasks"]["classify"]) == {"label", "name", "score"}
    assert "classify:" in stdout and "detect:" in stdout
    assert read_image(tmp_path / "pred" / "canvas.png").shape == (3, 64, 64)

    code, stdout, err = cli(monkeypatch, capsys, "prune", str(run / "model"), "--target-macs", "0.5",
                            "--steps", "1", "--finetune-epochs", "1", "--criterion", "taylor",
                            "--max-drop", "detect=1,segment=1,classify=1", "--out",
                            str(tmp_path / "pruned"))
    assert code == 0, err
    pruned = json.loads((tmp_path / "pruned" / "result.json").read_text())
    assert set(pruned["steps"][0]["metrics"]) == set(TASKS)  # one guard per task
    small = load(tmp_path / "pruned" / "model")
    shape = (1, 1, 64, 64)
    assert count_macs(small, shape) <= 0.55 * count_macs(model, shape)
    assert [c.out_channels for c in small.heads["detect"].predict] == [45, 45, 45]
    assert small.heads["segment"].high_classifier.out_channels == 11
    code, stdout, err = cli(monkeypatch, capsys, "report", str(tmp_path / "pruned"))
    assert code == 0, err
    for task in TASKS:  # one plot per task: baseline, then the step
        assert (tmp_path / "pruned" / f"task_{task}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(task_series(pruned)[task]["accepted"]) == 1 + (pruned["steps"][0]["status"]
                                                                  == "accepted")

    code, stdout, err = cli(monkeypatch, capsys, "export", str(tmp_path / "pruned" / "model"),
                            "--format", "onnx", "--out", str(tmp_path / "export"))
    assert code == 0, err
    exported = json.loads((tmp_path / "export" / "result.json").read_text())
    assert exported["max_rel_diff"] < 1e-3
    import onnx

    graph = onnx.load(str(tmp_path / "export" / "model.onnx")).graph
    assert [o.name for o in graph.output] == list(TASKS)


def test_tasks_on_a_source_without_them_is_one_line(monkeypatch, capsys, tmp_path, small_digits):
    for data, tasks, message in (("digits", "detect", "does not label several tasks per image"),
                                 ("digits-detect", "detect,depth", "not labelled in this source")):
        code, _, err = cli(monkeypatch, capsys, "train", "--data", data, "--tasks", tasks,
                           "--out", str(tmp_path / "bad"))
        assert code == 2 and message in err and err.strip().count("\n") == 0, err
        assert not (tmp_path / "bad").exists()
