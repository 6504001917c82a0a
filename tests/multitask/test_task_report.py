"""`leannet report` on a multi-task prune run: one PNG per task, each with that task's points
(baseline and accepted steps on the path, accepted steps before fine-tuning, rolled-back steps)
and its own guard; a one-metric run gets none. A multi-task training run gets one plot per task
across the epochs."""
import json

from PIL import Image

from leannet.report import TASK_PLOT, epoch_series, task_series, write_report
from tests.helpers import run_cli

BASE = {"metric": 0.5, "metrics": {"detect": 0.30, "segment": 0.60, "classify": 0.90},
        "params": 150_000, "macs": 2_700_000}


def _step(n, status, macs, after, before=None):
    return {"step": n, "status": status, "metric": sum(after.values()) / 3, "metrics": after,
            "metric_before_finetune": None,
            "metrics_before_finetune": before, "macs": macs, "params": macs // 20}


STEPS = [_step(1, "accepted", 2_000_000, {"detect": 0.29, "segment": 0.61, "classify": 0.89},
               {"detect": 0.20, "segment": 0.50, "classify": 0.70}),
         _step(2, "rolled_back", 1_300_000, {"detect": 0.21, "segment": 0.58, "classify": 0.85},
               {"detect": 0.10, "segment": 0.40, "classify": 0.50})
         | {"guard_broken_by": ["detect", "classify"]},
         _step(3, "accepted", 1_600_000, {"detect": 0.285, "segment": 0.60, "classify": 0.895},
               {"detect": 0.25, "segment": 0.55, "classify": 0.80}),
         {"step": 4, "status": "unreachable", "reason": "no channel left"}]


def _run(tmp_path, baseline=BASE, steps=STEPS):
    run = tmp_path / "run"
    run.mkdir()
    result = {"baseline": baseline, "steps": steps, "cost": "macs", "target_fraction": 0.5,
              "max_drop": {"detect": 0.02, "segment": 0.02, "classify": 0.01}}
    (run / "result.json").write_text(json.dumps(result))
    return run, result


def _png_size(path):
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and len(image.convert("L").getcolors(256)) > 10
        return image.size


def test_one_plot_per_task_with_its_points(tmp_path, monkeypatch, capsys):
    run, result = _run(tmp_path)
    series = task_series(result)
    assert list(series) == ["detect", "segment", "classify"]
    for task, points in series.items():
        assert [len(points[k]) for k in ("accepted", "before fine-tune", "rolled back")] == [3, 2, 1]
        assert points["accepted"][0] == (2.7, BASE["metrics"][task])  # baseline first, MMACs
        assert points["accepted"][2] == (1.6, STEPS[2]["metrics"][task])
        assert points["rolled back"] == [(1.3, STEPS[1]["metrics"][task])]
        assert points["before fine-tune"][1] == (1.6, STEPS[2]["metrics_before_finetune"][task])
    code, stdout, err = run_cli(monkeypatch, capsys, "report", str(run))
    assert code == 0, err
    report = (run / "report.md").read_text()
    for task in series:
        name = TASK_PLOT.format(task)
        width, height = _png_size(run / name)
        assert width > 200 and height > 150
        assert f"]({name})" in report and name in stdout


def test_a_one_metric_run_has_no_task_plots(tmp_path):
    steps = [dict(s, metrics={"accuracy": 0.9}) for s in STEPS[:3]]
    run, result = _run(tmp_path, dict(BASE, metrics={"accuracy": 0.91}), steps)
    assert task_series(result) == {}
    write_report(run)
    assert not list(run.glob("task_*.png")) and "Per task" not in (run / "report.md").read_text()


def test_a_multi_task_training_run_gets_a_plot_per_task_across_epochs(tmp_path, monkeypatch,
                                                                      capsys):
    run = tmp_path / "train"
    run.mkdir()
    history = [{"epoch": e, "loss": 3.0 / e, "detect/map50": 0.1 * e, "detect/map": 0.05 * e,
                "detect/train_loss": 2.0 / e, "segment/miou": 0.2 * e,
                "segment/pixel_accuracy": 0.3 * e, "classify/accuracy": 0.25 * e, "lr": 0.01}
               for e in (1, 2, 3)]
    (run / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
    (run / "result.json").write_text(json.dumps({"metrics": history[-1]}))
    code, stdout, err = run_cli(monkeypatch, capsys, "report", str(run))
    assert code == 0, err
    report = (run / "report.md").read_text()
    series = {"detect": ["map50", "map"], "segment": ["miou", "pixel_accuracy"],
              "classify": ["accuracy"]}
    for task in series:
        _png_size(run / TASK_PLOT.format(task))
        assert f"]({TASK_PLOT.format(task)})" in report
    got = epoch_series(history)
    assert {t: list(m) for t, m in got.items()} == series  # losses are not plotted
    assert got["segment"]["miou"] == [(1.0, 0.2), (2.0, 0.4), (3.0, 0.2 * 3)]
    (run / "history.jsonl").write_text('{"epoch": 1, "accuracy": 0.5}\n')
    code, _, err = run_cli(monkeypatch, capsys, "report", str(run))
    assert code == 2 and "training run of one task" in err and err.strip().count("\n") == 0
