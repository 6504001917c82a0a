"""Prune run reports: report.md with the step table and valid PNG plots, from hand-made files."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from leannet.errors import LeannetError
from leannet.report import (CHANNELS_PLOT, METRIC_PLOT, REPORT_FILE, SENSITIVITY_PLOT,
                            STEP_COLUMNS, _most_sensitive, write_report)

BASE = {"metric": 0.97, "params": 100_000, "macs": 4_000_000, "size_bytes": 410_000,
        "latency_ms": 1.5}
FINAL = {"metric": 0.962, "params": 52_000, "macs": 1_980_000, "size_bytes": 215_000,
         "latency_ms": 0.9}


def _step(n: int, status: str, frac: float, before: float, metric: float, macs: int) -> dict:
    return {"step": n, "status": status, "target_macs_fraction": frac,
            "metric_before_finetune": before, "metric": metric, "metrics": {"accuracy": metric},
            "params": macs // 40, "macs": macs, "latency_ms": macs / 2.2e6, "seconds": 3.25,
            "achieved_fraction": macs / BASE["macs"]}


STEPS = [_step(1, "accepted", 0.75, 0.90, 0.968, 3_000_000),
         _step(2, "rolled_back", 0.5, 0.41, 0.93, 2_000_000) | {"guard_broken_by": ["accuracy"]},
         _step(3, "accepted", 0.625, 0.88, 0.965, 2_500_000),
         _step(4, "accepted", 0.5, 0.85, 0.962, 1_980_000),
         {"step": 5, "status": "unreachable", "target_macs_fraction": 0.4,
          "reason": "no channel left to prune", "seconds": 0.1}]
CHANNELS_BEFORE = {"features.0.0": 16, "features.1.conv.0.0": 96, "features.2.conv.0.0": 144}
CHANNELS_AFTER = {"features.0.0": 16, "features.1.conv.0.0": 48, "features.2.conv.0.0": 64}


def _run_dir(tmp_path, sensitivity: bool = True):
    run = tmp_path / "run"
    run.mkdir()
    result = {"baseline": BASE, "final": FINAL, "steps": STEPS, "target_reached": True,
              "cost": "macs", "target_fraction": 0.5, "source_model": "runs/base/model",
              "data": "digits", "criterion": "l1", "max_drop": 0.01,
              "channels_before": CHANNELS_BEFORE, "channels_after": CHANNELS_AFTER}
    (run / "result.json").write_text(json.dumps(result))
    if sensitivity:
        sens = {"metric_name": "accuracy", "baseline": 0.97, "ratios": [0.25, 0.5, 0.75],
                "groups": {"features.1": [0.97, 0.95, 0.6], "features.2": [0.96, 0.9, 0.3]},
                "sizes": {"features.1": 96, "features.2": 144}}
        (run / "sensitivity.json").write_text(json.dumps(sens))
    return run


def _assert_png(path, min_size=(100, 100)):
    assert path.is_file()
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size[0] >= min_size[0] and image.size[1] >= min_size[1]
        assert len(image.convert("L").getcolors(256)) > 10  # something was drawn


def test_report_has_step_table_and_valid_plots(tmp_path):
    run = _run_dir(tmp_path)
    path = write_report(run)
    assert path == run / REPORT_FILE
    text = path.read_text()
    for name in (METRIC_PLOT, CHANNELS_PLOT, SENSITIVITY_PLOT):
        _assert_png(run / name)
        assert f"]({name})" in text
    lines = text.splitlines()
    header = "| " + " | ".join(STEP_COLUMNS) + " |"
    start = lines.index(header) + 2
    rows = [line for line in lines[start:start + 10] if line.startswith("| ")]
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows][:len(STEPS)]
    assert [c[0] for c in cells] == ["1", "2", "3", "4", "5"]
    assert [c[1] for c in cells] == ["accepted", "rolled back", "accepted", "accepted",
                                     "unreachable"]
    assert cells[1][2] == "50.0%" and cells[1][3] == "50.0%"
    assert cells[1][4] == "0.4100" and cells[1][5] == "0.9300"
    assert cells[1][10] == "drop too large: accuracy"
    assert cells[3][7] == "1,980,000" and cells[3][9] == "3.2"
    assert cells[4][5] == "-" and cells[4][10] == "no channel left to prune"
    assert "5 steps: 3 accepted, 1 rolled back, 1 unreachable." in text
    assert "Target: 50.0% of the baseline MACs. Target reached: **yes**" in text
    assert "model `runs/base/model`, data `digits`, criterion `l1`, max drop `0.01`" in text
    assert "| MACs | 4,000,000 | 1,980,000 | 0.495 |" in text
    assert "| features.1.conv.0.0 | 96 | 48 |" in text
    assert "| group | channels | 25.0% pruned | 50.0% pruned | 75.0% pruned |" in text
    assert "| features.2 | 144 | 0.9600 | 0.9000 | 0.3000 |" in text
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp") or
                p.name.startswith(".")]


def test_report_without_sensitivity_or_steps(tmp_path):
    run = _run_dir(tmp_path, sensitivity=False)
    result = json.loads((run / "result.json").read_text())
    result["steps"], result["target_reached"] = [], False
    result["baseline"]["metrics"] = {"top1": 0.97}  # the metric is named after the run's one metric
    (run / "result.json").write_text(json.dumps(result))
    text = write_report(run).read_text()
    assert "| top1 (validation: the guard chose on it) | 0.9700 | 0.9620 | 0.992 |" in text
    assert "Splits: not recorded" in text and "optimistic" in text  # an old run says so
    assert "No pruning steps were run." in text and "Target reached: **no**" in text
    assert not (run / SENSITIVITY_PLOT).exists() and "Sensitivity" not in text
    _assert_png(run / METRIC_PLOT)


def test_report_states_seed_splits_and_spread(tmp_path):
    run = _run_dir(tmp_path, sensitivity=False)
    result = json.loads((run / "result.json").read_text())
    result["metric_name"] = "accuracy"
    result["baseline"]["test_metrics"] = {"accuracy": 0.95, "loss": 0.2}
    result["final"]["test_metrics"] = {"accuracy": 0.9}
    result["seed"] = 3
    result["splits"] = {"selection": "val", "report": "test", "guard": "val",
                        "calibration": "val", "sizes": {"train": 900, "val": 100, "test": 400},
                        "sources": {"test": "the official test files"}}
    (run / "result.json").write_text(json.dumps(result))
    text = write_report(run).read_text()
    # binomial standard errors: sqrt(.95 * .05 / 400) = 0.0109, sqrt(.9 * .1 / 400) = 0.0150
    assert "| accuracy (test, held out) | 0.9500 ± 0.0109 | 0.9000 ± 0.0150 | 0.947 |" in text
    assert "Seed: 3. One run is one seed: there is no spread over seeds" in text
    assert "- val: 100 samples; used for the guard and the best fine-tuning epoch and " \
           "calibration" in text
    assert "- test: 400 samples; used for the test rows only; it chose nothing (the official " \
           "test files)" in text


@pytest.mark.parametrize("mutate, message", [
    (lambda run: [(run / name).unlink() for name in ("result.json", "sensitivity.json")],
     "no result.json"),
    (lambda run: (run / "result.json").write_text("{not json"), "not valid JSON"),
    (lambda run: (run / "result.json").write_text('{"baseline": {}}'), "not a prune run"),
    (lambda run: (run / "sensitivity.json").write_text(
        '{"ratios": [0.5], "groups": {"a": [1, 2]}}'), "one number per ratio"),
])
def test_bad_run_folder_is_refused_and_writes_nothing(tmp_path, mutate, message):
    run = _run_dir(tmp_path)
    mutate(run)
    before = sorted(p.name for p in run.iterdir())
    with pytest.raises(LeannetError, match=message):
        write_report(run)
    assert sorted(p.name for p in run.iterdir()) == before


def test_not_a_folder(tmp_path):
    with pytest.raises(LeannetError, match="not a run folder"):
        write_report(tmp_path / "missing")


def test_sensitivity_only_run_with_many_groups(tmp_path):
    """A `leannet sensitivity` folder (no prune steps) gets a report of its curves; with many
    groups only the most fragile are named in the legend."""
    run = tmp_path / "sens"
    run.mkdir()
    groups = {f"g{i:02d}": [0.97 - 0.01 * i * r for r in (1, 2, 3)] for i in range(15)}
    (run / "sensitivity.json").write_text(json.dumps(
        {"metric_name": "accuracy", "baseline": 0.97, "ratios": [0.25, 0.5, 0.75],
         "groups": groups}))
    (run / "result.json").write_text(json.dumps({"command": "sensitivity"}))
    text = write_report(run).read_text()
    assert text.startswith("# Sensitivity report: sens")
    assert "| g14 | - | 0.8300 | 0.6900 | 0.5500 |" in text
    assert sum(line.startswith(("| g0", "| g1")) for line in text.splitlines()) == 15
    _assert_png(run / SENSITIVITY_PLOT)
    assert not (run / METRIC_PLOT).exists()
    assert _most_sensitive(groups, 3) == ["g14", "g13", "g12"]
