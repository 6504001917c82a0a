"""train selects on validation and reports test; prune guards and calibrates on validation and
scores baseline and result once on test; eval reports test unless asked for val."""
import json
import math

import pytest

from leannet.errors import LeannetError
from leannet.jobs.prune import PruneJob, run_prune_job
from leannet.jobs.train import TrainJob, run_train
from leannet.train.evaluation import evaluate_folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("honest") / "train"
    result = run_train(TrainJob(model="simple_cnn", data="digits", image_size=8, epochs=2,
                                batch_size=64, out=out), progress=False)
    return out, result


def test_train_reports_test_and_says_which_split_chose(trained):
    out, result = trained
    assert result["main_metric_split"] == "test" and result["splits"]["selection"] == "val"
    assert set(result["splits"]["sources"]) == {"train", "val", "test"}
    test = evaluate_folder(out / "model")  # eval's default split is test
    val = evaluate_folder(out / "model", split="val")
    assert (test["split"], test["samples"], val["samples"]) == ("test", 360, 142)
    assert result["accuracy"] == pytest.approx(test["accuracy"], abs=1e-9)
    assert result["test_metrics"]["accuracy"] == result["accuracy"]
    assert result["metrics"]["accuracy"] == pytest.approx(val["accuracy"], abs=1e-9)  # chose
    saved = json.loads((out / "model" / "metrics.json").read_text())
    assert saved["split"] == "val" and saved["test"]["accuracy"] == result["accuracy"]
    with pytest.raises(LeannetError, match="--split must be one of test, val"):
        evaluate_folder(out / "model", split="train")


def test_prune_guards_on_val_and_reports_test(trained, tmp_path):
    out, _ = trained
    result = run_prune_job(PruneJob(out / "model", None, tmp_path / "pruned", criterion="taylor",
                                    target={"macs": 0.7}, steps=1, schedule="oneshot",
                                    max_drop=1.0, batch_size=64, round_to=1))
    splits = result["splits"]
    assert (splits["guard"], splits["calibration"], splits["report"]) == ("val", "val", "test")
    assert splits["calibration_batches"] == math.ceil(142 / 64)  # all of validation by default
    final = evaluate_folder(tmp_path / "pruned" / "model")
    assert result["final"]["test_metrics"]["accuracy"] == pytest.approx(final["accuracy"],
                                                                       abs=1e-9)
    guarded = evaluate_folder(tmp_path / "pruned" / "model", split="val")
    assert result["final"]["metrics"]["accuracy"] == pytest.approx(guarded["accuracy"], abs=1e-9)
    baseline = evaluate_folder(out / "model")
    assert result["baseline"]["test_metrics"]["accuracy"] == pytest.approx(baseline["accuracy"],
                                                                          abs=1e-9)


@pytest.mark.parametrize("options,message", [
    ({"calib_split": "test"}, "--calib-split must be val or train"),
    ({"calibration_batches": 0}, "--calib-batches must be"),
    ({"val_fraction": float("nan")}, "--val-fraction must be a finite number"),
])
def test_bad_split_options_are_one_line(trained, tmp_path, options, message):
    out, _ = trained
    with pytest.raises(LeannetError, match=message):
        run_prune_job(PruneJob(out / "model", None, tmp_path / "p", **options))
