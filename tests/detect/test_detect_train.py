"""End to end on digits-detect: build (k-means anchors) -> fit -> save/load -> evaluate ->
`leannet predict` images + JSON -> `leannet anchors`; and the count head beside the boxes."""
import json

import pytest
import torch
from typer.testing import CliRunner

from leannet.cli import app
from leannet.data import get_source
from leannet.data.loaders import make_loaders
from leannet.data.images import read_image, write_image
from leannet.detect.setup import build, task_for
from leannet.errors import LeannetError
from leannet.checkpoint import load
from leannet.train import evaluate, fit


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    source = get_source("digits-detect", image_size=64, num_train=48, num_val=16)
    model, task = build(source, "mobilenet_v2", {"width_mult": 0.25, "neck_channels": 16}, "v3")
    train, val = make_loaders(source, 16)
    history = fit(model, train, val, task, 1, optimizer="adamw", lr=3e-3, out_dir=out,
                  progress=False)
    return source, model, out, history


def test_fit_saves_a_detector_that_reloads(trained):
    source, model, out, history = trained
    assert {"loss", "map50", "map", "count_accuracy"} <= set(history[0])
    kwargs = model.leannet_config["kwargs"]
    assert len(kwargs["anchors"]) == 9 and kwargs["count_classes"] == 5
    loaded = load(out / "model")
    x = torch.rand(2, 1, 64, 64)
    model.eval()
    a, b = model(x), loaded(x)
    assert set(a) == {"s8", "s16", "s32", "count"}
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    task = task_for(loaded, source)
    _, val = make_loaders(source, 16)
    metrics = evaluate(loaded, val, task)
    assert 0.0 <= metrics["map50"] <= 1.0 and 0.0 <= metrics["count_accuracy"] <= 1.0


def test_predict_cli_draws_boxes_and_writes_json(trained, tmp_path):
    source, _, out, _ = trained
    paths = []
    for i in range(2):
        canvas, _ = source.val.render(i)
        paths.append(write_image(tmp_path / f"digits{i}.png", canvas))
    result = CliRunner().invoke(app, ["predict", str(out / "model"), *map(str, paths),
                                      "--out", str(tmp_path / "pred"), "--conf", "0.0"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "pred" / "detections.json").read_text())
    assert [e["output"] for e in report["images"]] == ["digits0.png", "digits1.png"]
    first = report["images"][0]["detections"]
    assert first and set(first[0]) == {"label", "name", "score", "box"}
    drawn = read_image(tmp_path / "pred" / "digits0.png")
    assert drawn.shape == (3, 64, 64) and (drawn[0] != drawn[1]).any()  # coloured boxes
    bad = CliRunner().invoke(app, ["predict", str(out / "model"), str(tmp_path / "nope.png"),
                                   "--out", str(tmp_path / "pred2")])
    assert bad.exit_code != 0 and "nope.png" in str(bad.exception or bad.output)
    assert not (tmp_path / "pred2").exists()


def test_anchors_cli_prints_anchors_and_mean_iou():
    result = CliRunner().invoke(app, ["anchors", "--data", "digits-detect", "-k", "3",
                                      "--image-size", "64"])
    assert result.exit_code == 0, result.output
    assert "mean IoU" in result.output and "3 anchors at 64 px" in result.output


def test_build_refuses_a_classification_source():
    with pytest.raises(LeannetError, match="detection source"):
        build(get_source("digits"), "mobilenet_v2", {}, "v3")
